-- Admission: a request's limits, token quotas and cache lookup in one atomic trip.
-- Run by admission.py (Admitter.admit); FRESH_UNTIL is filled in from cache/entry.py.
--
-- KEYS[1] rpm GCRA tat        KEYS[2] concurrency leases (zset)   KEYS[3] cache entry
-- KEYS[4] tpm GCRA tat        KEYS[5] tokens used today (counter)  KEYS[6] usage hash (today)
-- ARGV[1] now (ms)            ARGV[2] limits? (1/0)                ARGV[3] ms per request (rpm)
-- ARGV[4] burst window (ms)   ARGV[5] max concurrent               ARGV[6] lease id
-- ARGV[7] lease until (ms)    ARGV[9] token estimate
-- ARGV[8] the cache: 0 no lookup, 1 GET KEYS[3] here (the cache shares this Redis),
--         2 looked up by the caller in the cache's own Redis: ARGV[16] fresh until (ms),
--         ARGV[17] the entry's tokens
-- ARGV[10] ms per token (tpm; 0: no minute quota)                  ARGV[11] tokens per day (0: none)
-- ARGV[12] seconds the day counter lives                            ARGV[13] usage retention (s; 0: off)
-- ARGV[14] usage field prefix (model label and '|')                 ARGV[15] hits cost tokens? (1/0)
-- ARGV[18] tokens that must fit for the request to go (its prompt, and its completion cap
--          when it gives one): the rest of the estimate is a guess, no reason to refuse
--
-- Returns {verdict, remaining, reset_ms, retry_ms, cached entry or false,
--          tokens remaining (-1: no minute quota), tokens reset (ms)}; over the daily
--          quota, tokens remaining are the day's (the window that refused).
-- Verdicts: 0 go upstream (the entry, if any, is stale), 1 fresh hit, 2 over rpm,
--           3 too many concurrent, 4 over tokens per minute, 5 over tokens per day.

local now = tonumber(ARGV[1])
local limits = ARGV[2] == '1'
local interval = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local max_concurrent = tonumber(ARGV[5])
local lease_id = ARGV[6]
local lease_until = tonumber(ARGV[7])
local lookup = ARGV[8]
local estimate = tonumber(ARGV[9])
local token_interval = tonumber(ARGV[10])
local per_day = tonumber(ARGV[11])
local day_ttl = tonumber(ARGV[12])
local usage_ttl = tonumber(ARGV[13])
local prefix = ARGV[14]
local hits_cost = ARGV[15] == '1'
local needed = tonumber(ARGV[18])

-- Usage is bookkeeping: a refused write (Redis out of memory) must not cost the
-- request its answer, so it goes through pcall.
local function count(fields)
  if usage_ttl == 0 then return end
  for name, n in pairs(fields) do
    if n ~= 0 then redis.pcall('HINCRBY', KEYS[6], prefix .. name, n) end
  end
  redis.pcall('EXPIRE', KEYS[6], usage_ttl)
end

-- Requests per minute (GCRA): a key may spend its whole minute at once.
local new_tat = 0
local remaining = -1
local reset = 0
if limits then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  new_tat = tat + interval
  local used = new_tat - now
  if used > window then
    count({requests = 1, errors = 1})
    return {2, 0, tat - now, used - window, false, -1, 0}
  end
  remaining = math.floor((window - used) / interval)
  reset = used
end

-- Tokens per minute (GCRA, `cost` tokens at once) and per day (a counter per UTC day).
-- A request bigger than the whole quota is judged as exactly the quota, so it can
-- still run when the key has spent nothing.
local token_tat = 0
-- `need` must fit; `cost` is what is charged (settled with the real count at the end).
-- Returns the verdict (0: fits), the retry (ms) and, over the day, the day's tokens left.
local function tokens_fit(need, cost)
  if token_interval > 0 then
    local quota = math.floor(window / token_interval)
    local tat = tonumber(redis.call('GET', KEYS[4]) or now)
    if tat < now then tat = now end
    if tat + math.min(need, quota) * token_interval - now > window then
      return 4, tat + math.min(need, quota) * token_interval - now - window, 0
    end
    token_tat = tat + math.min(cost, quota) * token_interval
  end
  if per_day > 0 then
    local used = tonumber(redis.call('GET', KEYS[5]) or 0)
    if used + math.min(need, per_day) > per_day then
      return 5, 0, math.max(0, per_day - used)
    end
  end
  return 0, 0, 0
end
local function charge(cost)
  if token_interval > 0 then
    redis.call('SET', KEYS[4], token_tat, 'PX', math.max(1, math.ceil(token_tat - now)))
  end
  if per_day > 0 and cost > 0 then
    redis.call('INCRBY', KEYS[5], cost)
    redis.call('EXPIRE', KEYS[5], day_ttl)
  end
end
local function tokens_left()
  if token_interval == 0 then return -1, 0 end
  if token_tat == 0 then token_tat = tonumber(redis.call('GET', KEYS[4]) or now) end
  local used = math.max(token_tat, now) - now
  return math.floor((window - used) / token_interval), used
end

-- The cache: a fresh hit answers now, costing a request but no concurrency slot.
local value = false
local fresh_until, entry_tokens = 0, 0
if lookup == '1' then
  value = redis.call('GET', KEYS[3])
  if value then
    fresh_until = FRESH_UNTIL or 0
    entry_tokens = ENTRY_TOKENS or 0
  end
elseif lookup == '2' then
  fresh_until = tonumber(ARGV[16])
  entry_tokens = tonumber(ARGV[17])
end
if fresh_until > now then
  local cost = 0
  if hits_cost then
    cost = entry_tokens
    if limits then
      local over, retry, left_today = tokens_fit(cost, cost)
      if over > 0 then
        count({requests = 1, errors = 1})
        return {over, remaining, reset, retry, false, over == 5 and left_today or 0, retry}
      end
    end
  end
  if limits then
    redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
    if hits_cost then charge(cost) end
  end
  count({requests = 1, cache_hits = 1})
  local left, left_reset = tokens_left()
  return {1, remaining, reset, 0, value, left, left_reset}
end

if limits then
  local over, retry, left_today = tokens_fit(math.min(needed, estimate), estimate)
  if over > 0 then
    count({requests = 1, errors = 1})
    return {over, remaining, reset, retry, false, over == 5 and left_today or 0, retry}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= max_concurrent then
    count({requests = 1, errors = 1})
    return {3, remaining, reset, 1000, false, -1, 0}
  end
  redis.call('ZADD', KEYS[2], lease_until, lease_id)
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease_until - now))
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
  charge(estimate)
end
local left, left_reset = tokens_left()
return {0, remaining, reset, 0, value, left, left_reset}
