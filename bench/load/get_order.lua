-- GET /orders/{id} for one existing order (LOAD_ORDER_ID).
dofile((os.getenv("LOAD_LUA_DIR") or ".") .. "/common.lua")

local path = "/orders/" .. assert(os.getenv("LOAD_ORDER_ID"), "LOAD_ORDER_ID")

function request()
  return wrk.format("GET", path)
end
