-- wrk script for loadtest/compare.sh.
--
-- Request shape comes from the environment so one script serves every scenario:
--   LT_METHOD      GET (default) or POST
--   LT_BODY_BYTES  request body size in bytes (0 = none)
--   LT_CLOSE       1 = send "Connection: close" (a new connection per request)
--   LT_GZIP        1 = send "Accept-Encoding: gzip" (compressed answers)
-- done() prints one JSON line (prefixed "LTJSON ") with throughput, errors and a
-- latency percentile table in microseconds; report.py reads it.

local method = os.getenv("LT_METHOD") or "GET"
local body_bytes = tonumber(os.getenv("LT_BODY_BYTES") or "0") or 0
local close = os.getenv("LT_CLOSE") == "1"
local gzip = os.getenv("LT_GZIP") == "1"

wrk.method = method
if body_bytes > 0 then
  wrk.body = string.rep("x", body_bytes)          -- wrk.format adds Content-Length
  wrk.headers["Content-Type"] = "application/octet-stream"
end
if close then
  wrk.headers["Connection"] = "close"
end
if gzip then
  wrk.headers["Accept-Encoding"] = "gzip"
end

local percentiles = { 1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999 }

function done(summary, latency, requests)
  local parts = {}
  for _, p in ipairs(percentiles) do
    parts[#parts + 1] = string.format('"%s": %d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'LTJSON {"tool": "wrk", "duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f}, ' ..
    '"percentiles_us": {%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev,
    table.concat(parts, ", ")))
end
