-- authgate forward-auth for HAProxy 2.6+ (Lua 5.3, core.httpclient).
--
-- Registers the action `lua.authgate_check <url>`: it asks authgate's
-- forward-auth endpoint about the request, the way Traefik and Caddy do,
-- then either lets the request go on with the identity headers authgate
-- returned, or answers the client with authgate's own answer (the redirect
-- to the login page, 401 JSON, 403, 400). Explained in docs/forward-auth.md.
--
--   global
--       lua-load /etc/haproxy/authgate.lua
--   frontend app
--       http-request lua.authgate_check http://127.0.0.1:9091/_authgate/forward-auth

local IDENTITY = { "remote-user", "remote-name", "remote-email", "remote-groups" }

local IS_IDENTITY = {}
for _, name in ipairs(IDENTITY) do
    IS_IDENTITY[name] = true
end

-- Request headers that authgate reads besides the X-Forwarded-* ones.
local PASSED = { "cookie", "accept", "x-requested-with", "access-control-request-method" }

-- Response headers of a refusal worth handing back to the client.
local RELAYED = { "location", "content-type", "cache-control", "www-authenticate", "retry-after" }

-- The values of a header table of HAProxy (name -> list of values; the
-- list is indexed from 0 in some places and from 1 in others), in order.
local function values(list)
    local out = {}
    if list == nil then
        return out
    end
    if list[0] ~= nil then
        out[#out + 1] = list[0]
    end
    for _, v in ipairs(list) do
        out[#out + 1] = v
    end
    return out
end

-- Every client copy of an identity header goes, in any letter case and
-- also spelled with `_` (`remote_user`), which some app frameworks treat
-- as the same header.
local function strip_identity(txn)
    for name, _ in pairs(txn.http:req_get_headers()) do
        local normalized = string.lower(name):gsub("_", "-")
        if IS_IDENTITY[normalized] then
            txn.http:req_del_header(name)
        end
    end
end

local function check(txn, url)
    local request = txn.http:req_get_headers()
    -- ssl_fc is a boolean fetch; depending on the build it comes back as
    -- a boolean or as 0/1, and 0 is true in Lua.
    local tls = txn.f:ssl_fc()
    local scheme = "http"
    if tls == true or tls == 1 then
        scheme = "https"
    end
    local headers = {
        ["x-forwarded-method"] = { txn.sf:method() },
        ["x-forwarded-proto"] = { scheme },
        ["x-forwarded-host"] = { txn.sf:req_fhdr("host") },
        ["x-forwarded-uri"] = { txn.sf:pathq() },
        ["x-forwarded-for"] = { txn.sf:src() },
    }
    for _, name in ipairs(PASSED) do
        local v = values(request[name])
        if #v > 0 then
            local sep = ", "
            if name == "cookie" then
                sep = "; "
            end
            headers[name] = { table.concat(v, sep) }
        end
    end

    local answer = core.httpclient():get({ url = url, headers = headers, timeout = 10000 })
    local status = tonumber(answer and answer.status) or 0

    strip_identity(txn)
    if status >= 200 and status < 300 then
        local returned = answer.headers or {}
        for _, name in ipairs(IDENTITY) do
            local value = values(returned[name])[1]
            if value ~= nil and value ~= "" then
                txn.http:req_set_header(name, value)
            end
        end
        return
    end

    if status == 0 then
        -- authgate could not be asked: fail closed.
        txn:done({ status = 503, body = "authgate is unreachable\n" })
        return
    end
    local reply = txn:reply({ status = status, body = answer.body or "" })
    for _, name in ipairs(RELAYED) do
        for _, value in ipairs(values((answer.headers or {})[name])) do
            reply:add_header(name, value)
        end
    end
    txn:done(reply)
end

core.register_action("authgate_check", { "http-req" }, check, 1)
