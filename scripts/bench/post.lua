-- wrk script: POSTs the body in $BENCH_BODY with HTTP Basic auth from $BENCH_AUTH.
local file = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_AUTH")

-- Any non-200 answer is counted and printed, so a fast run of refusals can't pass as throughput.
local failures = 0
function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
    if failures <= 3 then io.stderr:write("non-200 answer: " .. status .. " " .. body .. "\n") end
  end
end
