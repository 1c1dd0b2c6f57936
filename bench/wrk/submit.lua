-- POST /jobs: a unique job name per request ($BENCH_RUN, thread, counter), also sent as the
-- X-Request-ID the service echoes, so every answer names its request. Per thread: how many were sent,
-- the answers by status, "id name" of every 201 ("-status name" of other answers), and the first few error bodies.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
local run = os.getenv("BENCH_RUN") or "run"
sent = 0
statuses = {}
answers = {}
samples = {}

function request()
  sent = sent + 1
  local name = run .. "-t" .. (tid or 1) .. "-" .. sent
  local body = '{"job_name":"' .. name .. '","application":{"application":"decode","version":"v0_10_1",'
    .. '"entrypoint":"train"},"attributes":{"files_down":{"config_id":"run1","data_ids":["run1"]}}}'
  local headers = {["X-Request-ID"] = name}  -- wrk.format takes these instead of wrk.headers
  for key, value in pairs(wrk.headers) do headers[key] = value end
  return wrk.format("POST", "/jobs", headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  local name = headers["x-request-id"] or headers["X-Request-ID"] or "?"
  if status == 201 then
    answers[#answers + 1] = (string.match(body, '"id":(%d+)') or "?") .. " " .. name
  else
    -- remember the names of refused requests too, and a few bodies
    answers[#answers + 1] = "-" .. key .. " " .. name
    local sample = key .. " " .. string.sub(body, 1, 300)
    if #samples < 3 and samples[#samples] ~= sample then samples[#samples + 1] = sample end
  end
end
