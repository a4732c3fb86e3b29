-- Weighted scenarios, as the original demo's load test had them:
--   normal    valid order                                          (LOAD_W_NORMAL, 70)
--   slow      valid order with X-Simulate-Latency (LOAD_SLOW_MS)   (LOAD_W_SLOW, 10)
--             (honoured only with ADMIN_TOKEN set here and in the service: sent as a bearer token)
--   malformed broken JSON, a missing field, a bad quantity, an
--             unknown user, no Idempotency-Key                     (LOAD_W_MALFORMED, 20)
-- Run with as many connections as threads: each connection then alternates request and
-- response, so each response is counted under the scenario of the request it answers.
dofile((os.getenv("LOAD_LUA_DIR") or ".") .. "/common.lua")

local users = split(os.getenv("LOAD_USER_IDS"))
assert(#users > 0, "LOAD_USER_IDS")
local product = os.getenv("LOAD_PRODUCT_ID") or "1"
local unknown_user = os.getenv("LOAD_UNKNOWN_USER_ID") or "999999999"
local slow_ms = os.getenv("LOAD_SLOW_MS") or "50"
local admin_token = os.getenv("ADMIN_TOKEN")
local w_normal = tonumber(os.getenv("LOAD_W_NORMAL") or "70")
local w_slow = tonumber(os.getenv("LOAD_W_SLOW") or "10")
local w_malformed = tonumber(os.getenv("LOAD_W_MALFORMED") or "20")
local total = w_normal + w_slow + w_malformed

local json = { ["Content-Type"] = "application/json" }
local last = nil

function init(args)
  math.randomseed(tonumber(os.getenv("LOAD_SEED") or "42") + (tid or 0))
end

local function order(user)
  return string.format('{"user_id":%s,"product_id":%s,"quantity":1}', json_id(user), json_id(product))
end

local function headers(extra)
  local h = { ["Content-Type"] = "application/json", ["Idempotency-Key"] = next_key() }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local malformed = {
  function() return wrk.format("POST", "/orders", headers(), '{"user_id": ') end,
  function() return wrk.format("POST", "/orders", headers(), string.format('{"product_id":%s,"quantity":1}', json_id(product))) end,
  function()
    local u = users[math.random(#users)]
    return wrk.format("POST", "/orders", headers(), string.format('{"user_id":%s,"product_id":%s,"quantity":0}', json_id(u), json_id(product)))
  end,
  function() return wrk.format("POST", "/orders", headers(), order(unknown_user)) end,
  function() return wrk.format("POST", "/orders", json, order(users[1])) end,
}

function request()
  local r = math.random(total)
  local user = users[math.random(#users)]
  if r <= w_normal then
    last = "normal"
    return wrk.format("POST", "/orders", headers(), order(user))
  elseif r <= w_normal + w_slow then
    last = "slow"
    return wrk.format("POST", "/orders", headers({ ["X-Simulate-Latency"] = slow_ms, ["Authorization"] = admin_token and ("Bearer " .. admin_token) or nil }), order(user))
  else
    last = "malformed"
    return malformed[math.random(#malformed)]()
  end
end

function response(status, headers, body)
  count(last, status)
end
