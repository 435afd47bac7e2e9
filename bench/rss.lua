-- wrk script for bench/rss.sh: proxied GETs, each with the next subject token of TOKENS_FILE
-- (one per line) as its bearer token; stops once COUNT responses have come back, so every
-- token is sent once (with -c N, up to N-1 requests after the last reuse the first tokens).
-- Use one wrk thread (-t1): the count is per thread. wrk itself runs for its whole -d, so on
-- reaching COUNT the script writes DONE_FILE and the caller interrupts wrk (SIGINT: wrk then
-- prints its summary).
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local count = tonumber(os.getenv("COUNT") or #tokens)
local done_file = os.getenv("DONE_FILE")
local next_token = 0
responses, non200 = 0, 0   -- globals: read from `done` with thread:get
local threads = {}

setup = function(thread)
  threads[#threads + 1] = thread
end

request = function()
  next_token = next_token % #tokens + 1
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. tokens[next_token] })
end

response = function(status)
  responses = responses + 1
  if status ~= 200 then non200 = non200 + 1 end
  if responses == count then
    if done_file then
      local f = io.open(done_file, "w")
      f:write(responses, "\n")
      f:close()
    end
    wrk.thread:stop()
  end
end

done = function(summary)
  local total, bad = 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("responses")
    bad = bad + thread:get("non200")
  end
  io.write(string.format("responses: %d, non-200: %d\n", total, bad))
end
