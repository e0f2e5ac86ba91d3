-- wrk script for bench/dataplane.py: an optional pace and a machine-readable summary.
--   wrk ... URL -- RATE THREADS    RATE total requests/s (0: as fast as possible)
-- Pacing: each thread hands out request slots on a fixed schedule (LuaJIT's ffi reads the
-- monotonic clock); `delay` is only defined when paced, so unpaced runs have no timer overhead.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval, next_due

local function paced_delay()
  local now = now_ms()
  if next_due == nil or next_due < now - 1000 then
    next_due = now  -- (re)start the schedule; never burst to catch up more than a second
  end
  next_due = next_due + interval
  return math.max(0, math.floor(next_due - interval - now + 0.5))
end

function init(args)
  local rate, threads = tonumber(args[1] or "0"), tonumber(args[2] or "1")
  if rate > 0 then
    interval = 1000 * threads / rate
    delay = paced_delay
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
