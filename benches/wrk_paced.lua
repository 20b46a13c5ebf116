-- wrk script: each connection waits WRK_PACE_MS (default 10) milliseconds after a response
-- before sending its next request, so the offered load is the same whatever answers it, and
-- latency is measured below saturation (wrk's latency excludes the wait).
local pace = tonumber(os.getenv("WRK_PACE_MS") or "10")

function delay()
    return pace
end
