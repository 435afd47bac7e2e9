-- wrk script for POST /tokens. TOKENS_FILE: one subject token per line.
-- Each request uses the next token (cold: every exchange verifies, maps and mints) unless
-- the file holds one token (warm: every exchange is a cache hit). AUDIENCE (default `app`)
-- names the provider; ACTOR_TOKEN, when set, is sent with every request as a JWT actor
-- token (delegation: the provider needs `delegation = true`).
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local next_token = 0
local prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience="
  .. (os.getenv("AUDIENCE") or "app")
local actor = os.getenv("ACTOR_TOKEN")
if actor and actor ~= "" then
  prefix = prefix .. "&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&actor_token=" .. actor
end
prefix = prefix .. "&subject_token="

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

request = function()
  next_token = next_token % #tokens + 1
  return wrk.format(nil, "/tokens", nil, prefix .. tokens[next_token])
end

local non200 = 0
response = function(status)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary)
  io.write(string.format("tokens used: %d distinct\n", math.min(#tokens, summary.requests)))
end
