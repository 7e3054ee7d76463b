-- wrk script of the skewed scenario (bench/skewed.ts). Usage:
--   wrk -t1 -c16 -d10s --latency -s bench/skew-load.lua http://127.0.0.1:PORT/ -- SERVICE
--
-- Every request carries the Host given as the script argument (the meshd
-- service, which names the balancing algorithm), a random x-user header (so
-- ring-hash, hashOn: { header: x-user }, sees many keys) and x-bench-start:
-- a monotonic timestamp in µs that bench/skew-backend.ts echoes back. The
-- response() hook times each request with it, and done() prints the measured
-- per-request percentiles (lines "BENCH-PERCENTILE <p> <µs>").
--
-- Why not wrk's own percentiles: wrk 4.x "corrects" its latency histogram
-- for coordinated omission before printing it (and before done() sees it):
-- every sample above twice the mean per-connection interval adds synthetic
-- samples below it. With one endpoint 10x slower than the others that moves
-- p50 from ~3 ms to ~10 ms. Debian's wrk does not expose the histogram bins
-- to Lua, so the correction cannot be undone here; the requests are timed
-- instead.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local host = "bench"
-- Globals, so that done() (which runs in wrk's main Lua state) can read them with thread:get().
latencies = {}
unmatched = 0

function init(args)
  if args[1] ~= nil then host = args[1] end
  math.randomseed(os.time())
end

function request()
  return wrk.format(nil, nil, {
    ["Host"] = host,
    ["x-user"] = tostring(math.random(1, 1000000)),
    ["x-bench-start"] = tostring(now_us()),
  })
end

function response(status, headers, body)
  local start = tonumber(headers["x-bench-start"])
  if start ~= nil then
    latencies[#latencies + 1] = now_us() - start
  else
    unmatched = unmatched + 1
  end
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local all = {}
  local missing = 0
  for _, thread in ipairs(threads) do
    local l = thread:get("latencies")
    for i = 1, #l do all[#all + 1] = l[i] end
    missing = missing + (thread:get("unmatched") or 0)
  end
  table.sort(all)
  io.write(string.format("BENCH-SAMPLES %d %d\n", #all, missing))
  for _, p in ipairs({ 50, 90, 95, 99, 99.9 }) do
    local value = all[math.max(1, math.ceil(p / 100 * #all))] or -1
    io.write(string.format("BENCH-PERCENTILE %g %d\n", p, value))
  end
end
