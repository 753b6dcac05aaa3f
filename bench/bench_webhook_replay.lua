-- wrk script: POST AdmissionReview bodies read from files, round-robin (non-reserving scenarios: the same uid may
-- repeat because nothing is reserved). Usage: wrk ... -s bench_webhook_replay.lua URL -- body1.json [body2.json ...]
-- Prints one JSON line with throughput and latency percentiles (microseconds) at the end.
local bodies = {}
local counter = 0

-- pacing (delay) and the JSON summary (done) live in wrk_common.lua, next to this script
local take_pace = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "") .. "wrk_common.lua")

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
