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

-- pacing (delay) and the JSON summary (done) live in wrk_common.lua, next to this script
local take_pace = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "") .. "wrk_common.lua")

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
