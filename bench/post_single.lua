-- wrk script: POST one distinct market-data record per request (symbol per thread, ts from a counter).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id or 0
  prefix = os.getenv("BENCH_SYMBOL") or "BENCH"
end

function request()
  counter = counter + 1
  local secs = counter % 60
  local mins = math.floor(counter / 60) % 60
  local hours = math.floor(counter / 3600) % 24
  local days = math.floor(counter / 86400) % 28 + 1
  local ts = string.format("2031-01-%02dT%02d:%02d:%02d.%03dZ", days, hours, mins, secs, thread_id)
  local body = string.format(
    '{"symbol":"%s%d","ts":"%s","open":100.25,"high":101.5,"low":99.75,"close":100.5,"volume":%d,"vwap":100.4}',
    prefix, thread_id, ts, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-API-Key"] = os.getenv("BENCH_KEY") or ""}, body)
end
