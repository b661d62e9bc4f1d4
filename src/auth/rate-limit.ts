/**
 * The rate limit per principal (tenant + sub): a token bucket in Redis, taken in one function call
 * (lua/limits.lua rate_take) per HTTP request and per WebSocket operation. RATE_LIMIT_PER_S tokens
 * per second refill a bucket of RATE_LIMIT_BURST; over the limit the request is refused with
 * RATE_LIMITED and `extensions.retryAfterMs` (HTTP 429 with Retry-After).
 */
import { GraphQLError } from 'graphql';
import { HeaderMap } from '@apollo/server';
import type { RedisClient } from '../redis/client.js';
import { fcall } from '../redis/replies.js';
import { rateLimitKey } from '../redis/keys.js';
import type { Principal } from './tokens.js';

export class RateLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly options: { ratePerSecond: number; rateBurst: number },
  ) {}

  /** Takes a token: null when allowed, else how long to wait (ms) before the next one. */
  async take(principal: Principal): Promise<number | null> {
    if (this.options.ratePerSecond === 0) return null;
    const reply = await fcall<{ ok: boolean; retryAfterMs?: number }>(
      this.redis,
      'rate_take',
      [rateLimitKey(principal.tenant, principal.sub)],
      [this.options.ratePerSecond, this.options.rateBurst],
    );
    return reply.ok ? null : Math.max(1, reply.retryAfterMs ?? 1000);
  }
}

export function rateLimited(retryAfterMs: number): GraphQLError {
  const headers = new HeaderMap([['retry-after', String(Math.ceil(retryAfterMs / 1000))]]);
  return new GraphQLError(`rate limit exceeded: retry in ${retryAfterMs} ms`, {
    extensions: { code: 'RATE_LIMITED', retryAfterMs, http: { status: 429, headers } },
  });
}
