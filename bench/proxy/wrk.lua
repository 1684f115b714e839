-- One manifest GET, fixed for the whole run, described by the environment:
--   BENCH_AUTHORIZATION  the whole Authorization header value (`Bearer …`, `Basic …`);
--                        no header when empty (anonymous)
--   BENCH_ACCEPT         the Accept header (the manifest media types a client accepts)
--   BENCH_OUT            file that receives one JSON line with the run's figures
-- The request is built once, so wrk does no per-request Lua work.
wrk.method = "GET"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
    wrk.headers["Authorization"] = authorization
end
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
    wrk.headers["Accept"] = accept
end

function done(summary, latency, requests)
    local errors = summary.errors
    local seconds = summary.duration / 1e6
    local line = string.format(
        '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
            .. '"max_us":%d,"mean_us":%.1f,"non_2xx_3xx":%d,"socket_errors":%d}',
        summary.requests, seconds, summary.requests / seconds,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean, errors.status,
        errors.connect + errors.read + errors.write + errors.timeout)
    local out = os.getenv("BENCH_OUT")
    if out and out ~= "" then
        local file = assert(io.open(out, "a"))
        file:write(line, "\n")
        file:close()
    end
    io.write(line, "\n")
end
