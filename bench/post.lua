-- wrk script: POST distinct market-data records, one per request (BENCH_BATCH unset or 0) or
-- batches of BENCH_BATCH records at the batch endpoint; a symbol per thread, times from a counter.
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
  size = tonumber(os.getenv("BENCH_BATCH") or "0")
  headers = {["Content-Type"] = "application/json", ["X-API-Key"] = os.getenv("BENCH_KEY") or ""}
end

-- The next record; the year keeps single-record and batch rows apart in one database.
local function record(year)
  counter = counter + 1
  local ms = counter % 1000
  local secs = math.floor(counter / 1000) % 60
  local mins = math.floor(counter / 60000) % 60
  local hours = math.floor(counter / 3600000) % 24
  local days = math.floor(counter / 86400000) % 28 + 1
  local ts = string.format("%d-01-%02dT%02d:%02d:%02d.%03dZ", year, days, hours, mins, secs, ms)
  return string.format(
    '{"symbol":"%s%d","ts":"%s","open":100.25,"high":101.5,"low":99.75,"close":100.5,"volume":%d,"vwap":100.4}',
    prefix, thread_id, ts, counter)
end

function request()
  if size == 0 then
    return wrk.format("POST", nil, headers, record(2031))
  end
  local records = {}
  for i = 1, size do
    records[i] = record(2033)
  end
  return wrk.format("POST", nil, headers, "[" .. table.concat(records, ",") .. "]")
end
