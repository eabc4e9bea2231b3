-- The semantic index: remember one entry under its scope key, keep the set bounded.
-- KEYS[1] scope key (a hash: entry key -> candidate, and "~v" -> its version, bumped
-- by every change so that gateways know when their decoded copy is out of date);
-- ARGV: entry key, candidate, seconds to live, the most candidates kept. Over the
-- cap, random others leave (HRANDFIELD, Redis >= 6.2): the set stays small, so a
-- lookup stays one scan.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], '~v', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local cap = tonumber(ARGV[4])
local n = redis.call('HLEN', KEYS[1]) - 1
if n > cap then
  local victims = redis.call('HRANDFIELD', KEYS[1], n - cap + 2)
  local removed = 0
  for _, field in ipairs(victims) do
    if field ~= ARGV[1] and field ~= '~v' and removed < n - cap then
      redis.call('HDEL', KEYS[1], field)
      removed = removed + 1
    end
  end
end
return n
