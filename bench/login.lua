-- Logins that work: the bench user's email and password, so each request
-- runs argon2 and then writes a new session to the store (the sled tree or
-- Redis). args: the CSRF cookie value, its token, the email, the password
-- (the email and password form-encoded).
local req

init = function(args)
  local body = "email=" .. args[3] .. "&password=" .. args[4] .. "&csrf=" .. args[2]
  req = wrk.format("POST", "/_authgate/login", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
    ["Cookie"] = "authgate_csrf=" .. args[1],
  }, body)
end

request = function()
  return req
end
