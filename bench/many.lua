-- Forward-auth with a different session on every request: each request
-- takes a random line of the cookies file (args[1]) as its Cookie header.
-- The requests are formatted once in init, so the per-request cost in wrk
-- is one table lookup, the same for both sides of the comparison.
local reqs, n = {}, 0

init = function(args)
  local file, original = args[1], args[2]
  for line in io.lines(file) do
    n = n + 1
    reqs[n] = wrk.format("GET", "/_authgate/auth-request",
      { ["Cookie"] = line, ["X-Original-URL"] = original })
  end
  assert(n > 0, "no cookies in " .. file)
  math.randomseed(os.time() + n)
end

request = function()
  return reqs[math.random(n)]
end
