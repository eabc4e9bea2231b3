-- The end of a request's Redis side, in one trip: store its cache entry, free its
-- concurrency slot, settle its token charge with the real count, and add its usage.
-- Run by admission.py (Admitter.settle), after the upstream answered (or failed)
-- and before the clients' responses end, so a client asking again finds the entry.
--
-- KEYS[1] cache entry        KEYS[2] concurrency leases   KEYS[3] tpm GCRA tat
-- KEYS[4] tokens used today  KEYS[5] usage hash (today)
-- ARGV[1] entry ('' = none)  ARGV[2] entry lifetime (ms)  ARGV[3] lease id ('' = none)
-- ARGV[4] tokens: real count minus what admission charged (may be negative)
-- ARGV[5] ms per token (tpm; 0: none)   ARGV[6] tokens per day (0: none)
-- ARGV[7] usage retention (s; 0: off)   ARGV[8] usage field prefix   ARGV[9] now (ms)
-- ARGV[10...] usage field, increment, field, increment ...

if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end

local delta = tonumber(ARGV[4])
if delta ~= 0 then
  local token_interval = tonumber(ARGV[5])
  if token_interval > 0 then
    -- The tat lives exactly as long as it is ahead of now: a missing key is "now".
    local now = tonumber(ARGV[9])
    local tat = math.max(tonumber(redis.call('GET', KEYS[3]) or now), now)
    local new_tat = tat + delta * token_interval
    if new_tat > now then
      redis.call('SET', KEYS[3], new_tat, 'PX', math.ceil(new_tat - now))
    else
      redis.call('DEL', KEYS[3])
    end
  end
  if tonumber(ARGV[6]) > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('INCRBY', KEYS[4], delta)
  end
end

local usage_ttl = tonumber(ARGV[7])
if usage_ttl > 0 and #ARGV > 9 then
  for i = 10, #ARGV, 2 do
    local n = tonumber(ARGV[i + 1])
    if n ~= 0 then redis.call('HINCRBY', KEYS[5], ARGV[8] .. ARGV[i], n) end
  end
  redis.call('EXPIRE', KEYS[5], usage_ttl)
end
return 1
