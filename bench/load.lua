-- wrk script of bench/run.py: one request shape per run, chosen by the arguments after `--`:
--   wrk ... -s bench/load.lua URL -- METHOD PATH KIND FILE THREADS
-- KIND is "none" (no body, no token), "bearer" (each line of FILE is an access token, used in
-- turn as Authorization: Bearer), "body" (each line is a JSON body, used in turn) or "once"
-- (each line is a JSON body sent exactly once: single-use refresh tokens; the lines are shared
-- out between wrk's threads, and a thread that runs out sends "{}", which the server refuses).
-- done() prints one line, "BENCH_JSON {...}", that run.py reads.

local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  method, path, kind = args[1], args[2], args[3]
  local file, threads = args[4], tonumber(args[5])
  items = {}
  if kind ~= "none" then
    local i = 0
    for line in io.lines(file) do
      if kind ~= "once" or i % threads == thread_id then
        items[#items + 1] = line
      end
      i = i + 1
    end
  end
  -- Cycled lists start at a different place in each thread.
  position = (kind == "once") and 0 or (thread_id * 7919) % math.max(#items, 1)
end

function request()
  if kind == "none" then
    return wrk.format(method, path)
  end
  position = position + 1
  if position > #items then
    if kind == "once" then
      return wrk.format(method, path, { ["Content-Type"] = "application/json" }, "{}")
    end
    position = 1
  end
  local item = items[position]
  if kind == "bearer" then
    return wrk.format(method, path, { ["Authorization"] = "Bearer " .. item })
  end
  return wrk.format(method, path, { ["Content-Type"] = "application/json" }, item)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
