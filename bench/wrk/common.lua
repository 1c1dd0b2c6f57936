-- Shared by every scenario (bench.py puts it in front of the scenario's own script).
-- wrk runs one Lua state per thread plus one for setup/done; done() gathers what each thread
-- counted (thread:get copies tables) and writes a JSON summary to $BENCH_WRK_OUT.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local function encode(value)
  local kind = type(value)
  if kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return string.format("%.17g", value)
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif kind == "boolean" then
    return tostring(value)
  elseif kind == "table" then
    local parts = {}
    if #value > 0 or next(value) == nil then
      for _, item in ipairs(value) do parts[#parts + 1] = encode(item) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for key, item in pairs(value) do parts[#parts + 1] = encode(tostring(key)) .. ":" .. encode(item) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

function done(summary, latency, requests)
  local out = {
    requests = summary.requests,
    duration_us = summary.duration,
    bytes = summary.bytes,
    errors = {
      connect = summary.errors.connect, read = summary.errors.read, write = summary.errors.write,
      status = summary.errors.status, timeout = summary.errors.timeout,
    },
    latency_us = {
      mean = latency.mean, p50 = latency:percentile(50), p99 = latency:percentile(99), max = latency.max,
    },
    threads = {},
  }
  for _, thread in ipairs(threads) do
    out.threads[#out.threads + 1] = {
      sent = thread:get("sent") or 0,
      statuses = thread:get("statuses") or {},
      answers = thread:get("answers") or {},
      samples = thread:get("samples") or {},
    }
  end
  local file = assert(io.open(os.getenv("BENCH_WRK_OUT"), "w"))
  file:write(encode(out))
  file:close()
end
