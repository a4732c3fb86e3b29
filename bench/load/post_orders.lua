-- POST /orders: valid orders for existing users (LOAD_USER_IDS), each with its own
-- Idempotency-Key, so every request is a new order.
dofile((os.getenv("LOAD_LUA_DIR") or ".") .. "/common.lua")

local users = split(os.getenv("LOAD_USER_IDS"))
assert(#users > 0, "LOAD_USER_IDS")
local product = os.getenv("LOAD_PRODUCT_ID") or "1"

function request()
  local key = next_key()
  local user = users[(counter % #users) + 1]
  local body = string.format('{"user_id":%s,"product_id":%s,"quantity":1}', json_id(user), json_id(product))
  return wrk.format("POST", "/orders", { ["Content-Type"] = "application/json", ["Idempotency-Key"] = key }, body)
end

-- Counting statuses costs wrk a Lua call per response: only when asked (the fail-fast runs).
if os.getenv("LOAD_COUNT_STATUS") == "1" then
  function response(status, headers, body)
    count(nil, status)
  end
end
