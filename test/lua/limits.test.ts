/**
 * lua/limits.lua rate_take: a token bucket in one call. A new bucket is full; each call takes one
 * token; with none left it answers retryAfterMs and writes nothing; the bucket refills at `rate` per
 * second up to `burst` and expires once full again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connectTestRedis, expectRejectedWithoutWrites, uniqueTenant } from '../setup/helpers.js';
import { rateLimitKey, tenantKeyPattern } from '../../src/redis/keys.js';
import { Engine } from '../../src/engine/engine.js';

let redis: Redis;
beforeAll(async () => {
  redis = await connectTestRedis();
});
afterAll(() => redis.disconnect());

const take = async (key: string, rate: number | string, burst: number | string) =>
  JSON.parse(String(await redis.call('FCALL', 'atomflow_'+'rate_take', 1, key, rate, burst))) as { ok: boolean; retryAfterMs?: number };

describe('rate_take', () => {
  it('allows a burst, then refuses with retryAfterMs and writes nothing', async () => {
    const key = rateLimitKey(uniqueTenant(), 'alice');
    for (let i = 0; i < 3; i++) expect(await take(key, 2, 3)).toEqual({ ok: true });
    const before = await redis.hgetall(key);
    const refused = await take(key, 2, 3);
    expect(refused.ok).toBe(false);
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(500);
    expect(await redis.hgetall(key)).toEqual(before);
    // the bucket expires once it would be full again: (burst - tokens) / rate seconds, plus 1 s
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(1000);
    expect(ttl).toBeLessThanOrEqual(3 * 500 + 1000);
  });

  it('refills at the rate: after retryAfterMs a token is there again', async () => {
    const key = rateLimitKey(uniqueTenant(), 'bob');
    expect(await take(key, 10, 1)).toEqual({ ok: true });
    const { retryAfterMs } = await take(key, 10, 1);
    expect(retryAfterMs).toBeGreaterThan(0);
    await expect.poll(() => take(key, 10, 1), { interval: retryAfterMs, timeout: 2000 }).toEqual({ ok: true });
  });

  it('keeps principals and tenants apart, outside the tenant keyspace', async () => {
    const tenant = uniqueTenant();
    expect(rateLimitKey(tenant, 'a')).not.toBe(rateLimitKey(tenant, 'b'));
    expect(rateLimitKey(tenant, 'a')).not.toBe(rateLimitKey(uniqueTenant(), 'a'));
    const pattern = new RegExp(`^${tenantKeyPattern(tenant).replace(/[{}]/g, '\\$&').replace('*', '.*')}$`);
    expect(rateLimitKey(tenant, 'a')).not.toMatch(pattern);
    expect(rateLimitKey(tenant, 'a')).toContain(`{${tenant}}`);
  });

  it('refuses bad arguments before writing', async () => {
    const key = rateLimitKey(uniqueTenant(), 'carol');
    for (const [rate, burst] of [
      [0, 1],
      ['x', 1],
      [1.5, 1],
      [1, 0],
      [1, 2_000_000],
    ]) {
      await expect(take(key, rate!, burst!)).rejects.toThrow(/^BAD_USER_INPUT (rate|burst) must be an integer/);
    }
    expect(await redis.exists(key)).toBe(0);
  });
});

describe('machine_names stays one page', () => {
  it('a tenant has at most 1,000 machines: a new one beyond is BAD_USER_INPUT, a new version of one is fine', async () => {
    const engine = new Engine(redis);
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    const machine = (name: string) => ({ name, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] });
    await engine.workflows.defineMachine(tenant, machine('kept'));
    // 999 more names (as if defined): 1,000 in all
    await redis.sadd(k.machineNames(), ...Array.from({ length: 999 }, (_, i) => `m${i}`));
    const error = await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.defineMachine(tenant, machine('one-more')), 'BAD_USER_INPUT');
    expect(error.message).toBe('a tenant has at most 1000 machines');
    // a changed definition of a machine that exists is a new version, not a new machine
    const changed = { ...machine('kept'), states: ['a', 'b', 'c'], transitions: [{ from: 'a', to: ['b', 'c'] }] };
    expect((await engine.workflows.defineMachine(tenant, changed)).version).toBe(2);
    await redis.srem(k.machineNames(), 'm0');
    expect((await engine.workflows.defineMachine(tenant, machine('one-more'))).version).toBe(1);
  });
});
