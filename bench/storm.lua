-- Login storm: wrong-password logins, each with a new email, so every one
-- runs argon2 (regulation is raised in the bench config). args: the CSRF
-- cookie value, its token, a tag that keeps emails of separate runs apart.
local counter = 0
local headers, tag, token

-- thread_no is a global: thread:set writes globals of the thread's state.
setup_no = 0
setup = function(thread)
  setup_no = setup_no + 1
  thread:set("thread_no", setup_no)
end

init = function(args)
  tag, token = args[3], args[2]
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
    ["Cookie"] = "authgate_csrf=" .. args[1],
  }
end

request = function()
  counter = counter + 1
  local body = "email=storm-" .. tag .. "-" .. (thread_no or 0) .. "-" .. counter ..
    "%40example.com&password=wrong-password&csrf=" .. token
  return wrk.format("POST", "/_authgate/login", headers, body)
end
