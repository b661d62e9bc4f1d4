#!lua name=atomflow_limits
-- include: core
-- Limits: the per-principal rate limit, a token bucket kept in one hash and taken in one call. The
-- loader puts the parts named on line 2 (lua/include/) after line 1.

local LIBRARY_VERSION = '1'

--[[ rate_take: takes one token from a principal's bucket, refilled continuously at `rate` per second
  up to `burst` (a new bucket starts full).
  KEYS[1] bucket (hash: tokens, at ms)
  ARGV[1] rate: tokens per second (1 to 10^6)   ARGV[2] burst: bucket size (1 to 10^6)
  Reply: JSON {"ok":true} or, when no whole token is left, {"ok":false,"retryAfterMs":N} (nothing written)
  Errors: BAD_USER_INPUT (rate or burst out of range)
  Writes: the bucket, expiring once it would be full again
]]
register('rate_take', function(keys, args)
  local rate = tonumber(args[1])
  local burst = tonumber(args[2])
  if not rate or rate < 1 or rate > 1000000 or rate % 1 ~= 0 then reject('BAD_USER_INPUT', 'rate must be an integer from 1 to 1000000') end
  if not burst or burst < 1 or burst > 1000000 or burst % 1 ~= 0 then reject('BAD_USER_INPUT', 'burst must be an integer from 1 to 1000000') end
  local now = now_ms()
  local stored = redis.call('HMGET', keys[1], 'tokens', 'at')
  local tokens = tonumber(stored[1]) or burst
  local at = tonumber(stored[2]) or now
  if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
  if tokens < 1 then
    return cjson.encode({ ok = false, retryAfterMs = math.ceil((1 - tokens) * 1000 / rate) })
  end
  tokens = tokens - 1
  redis.call('HSET', keys[1], 'tokens', string.format('%.6f', tokens), 'at', now)
  redis.call('PEXPIRE', keys[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
  return cjson.encode({ ok = true })
end)

register('limits_version', function() return cjson.encode({ library = 'atomflow_limits', version = LIBRARY_VERSION }) end, true)
