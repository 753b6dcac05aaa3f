-- wrk script: every request is a new workload with its own AdmissionReview uid and name, so every one reserves.
-- The body file holds the placeholders __UID__ and __NAME__. Each wrk thread numbers its requests apart.
-- Usage: wrk ... -s bench_webhook_reserving.lua URL -- body.json RUN_ID
local parts = {}
local counter = 0
local thread_id = 0
local run_id = "run"
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end


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
  local f = assert(io.open(args[1], "rb"))
  local template = f:read("*a")
  f:close()
  run_id = args[2] or "run"
  -- split once around the placeholders so each request is a cheap concatenation
  local a, b = template:find("__UID__", 1, true)
  local c, d = template:find("__NAME__", 1, true)
  assert(a and c and a < c, "template needs __UID__ before __NAME__")
  parts = { template:sub(1, a - 1), template:sub(b + 1, c - 1), template:sub(d + 1) }
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local id = string.format("%s-%d-%d", run_id, tid or 0, counter)
  return wrk.format(nil, "/validate", nil, parts[1] .. id .. parts[2] .. "job-" .. id .. parts[3])
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
