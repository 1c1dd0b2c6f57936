-- PUT /_job_status from the worker-facing API: `running` keep-alives cycling over $BENCH_JOB_IDS
-- (the first pass moves each job from queued to running, every later one is a keep-alive).

local ids = {}
for id in string.gmatch(os.getenv("BENCH_JOB_IDS") or "", "%d+") do ids[#ids + 1] = id end
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("BENCH_API_KEY")
local position = 0

function init(args)
  position = ((tid or 1) - 1) * 97
end

function request()
  position = position + 1
  local id = ids[(position % #ids) + 1]
  return wrk.format("PUT", "/_job_status", nil,
    '{"job_id":' .. id .. ',"status":"running","runtime_details":null}')
end
