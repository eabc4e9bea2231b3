-- The end of a request's Redis side, in one trip: free its concurrency slot, settle
-- its token charge with the real count, and add its usage.
-- Run by admission.py (Admitter.settle), after the upstream answered (or failed).
-- The cache entry is NOT written here: that is a command of its own (Admitter.store,
-- on the cache's Redis), so a refused or failed write can cost the entry, never the
-- slot, the quota or the usage.
--
-- KEYS[1] concurrency leases   KEYS[2] tpm GCRA tat   KEYS[3] tokens used today
-- KEYS[4] usage hash (today)
-- ARGV[1] lease id ('' = none)
-- ARGV[2] tokens: real count minus what admission charged (may be negative)
-- ARGV[3] ms per token (tpm; 0: none)   ARGV[4] tokens per day (0: none)
-- ARGV[5] usage retention (s; 0: off)   ARGV[6] usage field prefix   ARGV[7] now (ms)
-- ARGV[8...] usage field, increment, field, increment ...

if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end

local delta = tonumber(ARGV[2])
if delta ~= 0 then
  local token_interval = tonumber(ARGV[3])
  if token_interval > 0 then
    -- The tat lives exactly as long as it is ahead of now: a missing key is "now".
    local now = tonumber(ARGV[7])
    local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or now), now)
    local new_tat = tat + delta * token_interval
    if new_tat > now then
      redis.call('SET', KEYS[2], new_tat, 'PX', math.ceil(new_tat - now))
    else
      redis.call('DEL', KEYS[2])
    end
  end
  if tonumber(ARGV[4]) > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('INCRBY', KEYS[3], delta)
  end
end

local usage_ttl = tonumber(ARGV[5])
if usage_ttl > 0 and #ARGV > 7 then
  for i = 8, #ARGV, 2 do
    local n = tonumber(ARGV[i + 1])
    if n ~= 0 then redis.call('HINCRBY', KEYS[4], ARGV[6] .. ARGV[i], n) end
  end
  redis.call('EXPIRE', KEYS[4], usage_ttl)
end
return 1
