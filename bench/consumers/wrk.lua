-- One request, fixed for the whole run, described by the environment:
--   BENCH_METHOD  GET or POST (default GET)
--   BENCH_TOKEN   API token, sent as `Authorization: Bearer …` when set
--   BENCH_BODY    JSON body, sent with `Content-Type: application/json` when set
--   BENCH_OUT     file that receives one JSON line with the run's figures
--   BENCH_DISTINCT_HOST, BENCH_DISTINCT_COUNT  when set, every request resolves an image
--                 never asked for before: HOST/team-NNNNNN/app-THREAD-COUNTER:1 with NNNNNN
--                 drawn at random below COUNT, so no cache can answer and the server
--                 runs its best-match query each time
-- Otherwise the request is built once, so wrk does no per-request Lua work.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
end

local distinct_host = os.getenv("BENCH_DISTINCT_HOST")
if distinct_host and distinct_host ~= "" then
    local count = tonumber(os.getenv("BENCH_DISTINCT_COUNT"))
    local threads = 0
    function setup(thread)
        threads = threads + 1
        thread:set("thread_number", threads)
    end
    local sent = 0
    function request()
        sent = sent + 1
        local body = string.format('{"image":"%s/team-%06d/app-%d-%d:1"}', distinct_host,
            math.random(0, count - 1), thread_number, sent)
        return wrk.format(nil, nil, nil, body)
    end
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
