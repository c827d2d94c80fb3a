-- wrk script: POST batches of BENCH_BATCH distinct market-data records (default 20; symbol per
-- thread, ts from a counter), as a client sending small batches does.
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
  size = tonumber(os.getenv("BENCH_BATCH") or "20")
end

function request()
  local records = {}
  for i = 1, size do
    counter = counter + 1
    local ms = counter % 1000
    local secs = math.floor(counter / 1000) % 60
    local mins = math.floor(counter / 60000) % 60
    local hours = math.floor(counter / 3600000) % 24
    local days = math.floor(counter / 86400000) % 28 + 1
    local ts = string.format("2033-01-%02dT%02d:%02d:%02d.%03dZ", days, hours, mins, secs, ms)
    records[i] = string.format(
      '{"symbol":"%s%d","ts":"%s","open":100.25,"high":101.5,"low":99.75,"close":100.5,"volume":%d,"vwap":100.4}',
      prefix, thread_id, ts, counter)
  end
  local body = "[" .. table.concat(records, ",") .. "]"
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-API-Key"] = os.getenv("BENCH_KEY") or ""}, body)
end
