-- Shared by the wrk scripts bench_webhook_*.lua (loaded with dofile from the same folder): pacing and the JSON
-- summary line that bench_webhook.py parses. Defines the globals delay() and done() and returns take_pace().

-- Optional pacing ("pace=<ms>" among the arguments): each connection waits <ms> after every response before its
-- next request, turning wrk's closed loop into an (approximately) fixed offered rate; bench_webhook.py calibrates
-- <ms> until the achieved rate matches the target. wrk's delay() takes whole milliseconds, so the fractional part
-- is carried over from request to request.
local pace_ms = nil
local carry = 0.0

-- Removes "pace=<ms>" from the script arguments (remembering it) and returns the others.
local function take_pace(args)
  local rest = {}
  for _, a in ipairs(args) do
    local v = a:match("^pace=(.+)$")
    if v then pace_ms = tonumber(v) else rest[#rest + 1] = a end
  end
  return rest
end

function delay()
  if not pace_ms then return 0 end
  carry = carry + pace_ms
  local whole = math.floor(carry)
  carry = carry - whole
  return whole
end

-- One JSON line with throughput and latency percentiles (microseconds).
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end

return take_pace
