/**
 * Helpers for tests: a connection to the private redis-server with the functions loaded, a fresh
 * tenant per test, and a snapshot of every key of a tenant (to prove a rejected call wrote nothing).
 */
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { Redis } from 'ioredis';
import { loadFunctions } from '../../src/redis/functions.js';
import { tenantKeyPattern } from '../../src/redis/keys.js';
import { Engine } from '../../src/app/engine.js';

export function redisUrl(): string {
  return inject('redisUrl');
}

export async function connectTestRedis(): Promise<Redis> {
  const redis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
  await loadFunctions(redis);
  return redis;
}

export async function createTestEngine(): Promise<{ redis: Redis; engine: Engine }> {
  const redis = await connectTestRedis();
  return { redis, engine: new Engine(redis) };
}

/** A tenant no other test uses: tests share one redis-server and run in parallel. */
export function uniqueTenant(label = 't'): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}

/** Every key of the tenant with its type and full content, in a stable order. */
export async function snapshotTenant(redis: Redis, tenant: string): Promise<Record<string, unknown>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', tenantKeyPattern(tenant), 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  keys.sort();
  const snapshot: Record<string, unknown> = {};
  for (const key of keys) {
    const type = await redis.type(key);
    let value: unknown;
    switch (type) {
      case 'string':
        value = await redis.get(key);
        break;
      case 'hash':
        value = Object.fromEntries(Object.entries(await redis.hgetall(key)).sort(([a], [b]) => a.localeCompare(b)));
        break;
      case 'list':
        value = await redis.lrange(key, 0, -1);
        break;
      case 'set':
        value = (await redis.smembers(key)).sort();
        break;
      case 'zset':
        value = await redis.zrange(key, 0, -1, 'WITHSCORES');
        break;
      case 'stream':
        value = await redis.xrange(key, '-', '+');
        break;
      default:
        value = null;
    }
    snapshot[key] = { type, value };
  }
  return snapshot;
}

/** Runs `action`, expects it to reject with an EngineError of `code`, and that no key changed. */
export async function expectRejectedWithoutWrites(
  redis: Redis,
  tenant: string,
  action: () => Promise<unknown>,
  code: string,
): Promise<Error & { code?: string }> {
  const before = await snapshotTenant(redis, tenant);
  let caught: (Error & { code?: string }) | undefined;
  try {
    await action();
  } catch (err) {
    caught = err as Error & { code?: string };
  }
  if (!caught) throw new Error(`expected a ${code} rejection, but the call succeeded`);
  if (caught.code !== code) throw new Error(`expected ${code}, got ${caught.code ?? 'no code'}: ${caught.message}`);
  const after = await snapshotTenant(redis, tenant);
  if (JSON.stringify(after) !== JSON.stringify(before)) {
    throw new Error(`a rejected call (${code}) changed tenant ${tenant}'s keys`);
  }
  return caught;
}
