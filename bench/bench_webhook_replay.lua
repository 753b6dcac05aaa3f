-- wrk script: POST AdmissionReview bodies read from files, round-robin (non-reserving scenarios: the same uid may
-- repeat because nothing is reserved). Usage: wrk ... -s bench_webhook_replay.lua URL -- body1.json [body2.json ...]
-- Prints one JSON line with throughput and latency percentiles (microseconds) at the end.
local bodies = {}
local counter = 0


-- Optional pacing ("pace=<ms>" among the arguments): each connection waits <ms> after every response before its
-- next request, turning wrk's closed loop into an (approximately) fixed offered rate; bench_webhook.py calibrates
-- <ms> until the achieved rate matches the target. wrk's delay() takes whole milliseconds, so the fractional part
-- is carried over from request to request.
local pace_ms = nil
local carry = 0.0

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

function init(args)
  args = take_pace(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = f:read("*a")
    f:close()
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, "/validate", nil, bodies[(counter % #bodies) + 1])
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
