-- Shared by every load script: thread ids, unique keys, and one RESULT line at the end.
--
-- wrk runs each thread in its own Lua state; `setup` runs in the main state once per
-- thread, `done` in the main state at the end and reads the threads' globals back.

local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

-- Idempotency keys unique across threads, runs and restarts of wrk.
run_id = os.getenv("LOAD_RUN_ID") or tostring(os.time())
counter = 0
function next_key()
  counter = counter + 1
  return string.format("load-%s-%d-%d", run_id, tid or 0, counter)
end

-- "1,2,3" -> {"1","2","3"}
function split(s)
  local out = {}
  for item in string.gmatch(s or "", "[^,%s]+") do
    table.insert(out, item)
  end
  return out
end

-- A JSON literal for an id: numbers bare, anything else quoted.
function json_id(v)
  if tonumber(v) then return v end
  return '"' .. v .. '"'
end

-- Per-thread counts kept by scripts that define `response`, in one flat table (wrk cannot
-- copy nested tables between Lua states): counts["all:201"], counts["normal:201"].
counts = {}

function count(scenario, status)
  local s = tostring(status)
  counts["all:" .. s] = (counts["all:" .. s] or 0) + 1
  if scenario then
    counts[scenario .. ":" .. s] = (counts[scenario .. ":" .. s] or 0) + 1
  end
end

-- {"all:201": 3, "normal:201": 2} -> {"all":{"201":3},"normal":{"201":2}} as JSON text.
local function encode(flat)
  local groups, names = {}, {}
  for k, v in pairs(flat) do
    local g, status = string.match(k, "^(.*):(%d+)$")
    if not groups[g] then
      groups[g] = {}
      table.insert(names, g)
    end
    table.insert(groups[g], string.format('"%s":%d', status, v))
  end
  table.sort(names)
  local parts = {}
  for _, g in ipairs(names) do
    table.sort(groups[g])
    table.insert(parts, string.format('"%s":{%s}', g, table.concat(groups[g], ",")))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("counts") or {}) do
      all[k] = (all[k] or 0) + v
    end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  local ms = function(p) return string.format("%.3f", latency:percentile(p) / 1000) end
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%s,"p99_ms":%s,"p999_ms":%s,"max_ms":%.3f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},"counts":%s}\n',
    summary.requests, secs, summary.requests / secs, ms(50), ms(99), ms(99.9), latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, e.status, encode(all)))
end
