-- wrk script for bench/run: POSTs one body per request, taken in order from a file.
--
--   BENCH_BODIES   file with one request body per line; "__ID__" is replaced by a counter (unique per request)
--   BENCH_PATH     request path (POST)
--   BENCH_HEADERS  file of "Name: value" lines sent with every request
--   BENCH_SESSIONS optional file of MCP session ids, sent round-robin as Mcp-Session-Id
--   BENCH_ONCE     "1": each body is used once (each code / refresh token is presented exactly once); when they
--                  run out, wrk stops itself (SIGINT to itself); a request still asked for goes to BENCH_STOP_PATH
--   BENCH_OUT      where done() writes the summary as JSON
local bodies, n, idx, counter = {}, 0, 0, 0
local sessions, nsessions = {}, 0
local headers = {}
local path = os.getenv("BENCH_PATH") or "/"
local once = os.getenv("BENCH_ONCE") == "1"
local stop_path = os.getenv("BENCH_STOP_PATH") or "/"
local stopped = false

function init(args)
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    if #line > 0 then n = n + 1; bodies[n] = line end
  end
  local hfile = os.getenv("BENCH_HEADERS")
  if hfile and #hfile > 0 then
    for line in io.lines(hfile) do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then headers[name] = value end
    end
  end
  local sfile = os.getenv("BENCH_SESSIONS")
  if sfile and #sfile > 0 then
    for line in io.lines(sfile) do
      if #line > 0 then nsessions = nsessions + 1; sessions[nsessions] = line end
    end
  end
end

function request()
  idx = idx + 1
  if idx > n then
    if once then
      if not stopped then
        -- wrk's main thread sleeps for the whole -d duration whatever the threads do; SIGINT wakes it, so the
        -- measured time ends when the last body was sent (the <= 16 requests then in flight are not counted).
        stopped = true
        wrk.thread:stop()
        -- (in the background: system() ignores SIGINT in wrk until the shell returns)
        os.execute("(sleep 0.01; kill -INT $PPID) &")
      end
      return wrk.format("GET", stop_path)
    end
    idx = 1
  end
  counter = counter + 1
  if nsessions > 0 then headers["Mcp-Session-Id"] = sessions[(counter % nsessions) + 1] end
  local body = bodies[idx]:gsub("__ID__", tostring(counter))
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"max_us": %d, "non2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
  out:close()
end
