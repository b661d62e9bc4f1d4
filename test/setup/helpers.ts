/**
 * Helpers for tests: a connection to the private redis-server with the functions loaded, a fresh
 * tenant per test, and a snapshot of every key of a tenant (to prove a rejected call wrote nothing).
 */
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import type { Redis } from 'ioredis';
import { loadFunctions } from '../../src/redis/functions.js';
import { connectRedis, isCluster, primaryFor, type RedisClient, type RedisTarget } from '../../src/redis/client.js';
import { clusterTarget } from '../../src/redis/connect.js';
import { readConfig } from '../../src/config.js';
import { tenantKeyPattern } from '../../src/redis/keys.js';
import { Engine } from '../../src/app/engine.js';

export function redisUrl(): string {
  return inject('redisUrl');
}

/** What the tests run on: the private redis-server, or in the cluster run the loopback cluster. */
export function testRedisTarget(): RedisTarget {
  const seeds = inject('redisClusterNodes');
  return seeds ? clusterTarget(readConfig({ REDIS_CLUSTER_NODES: seeds }).redisCluster!) : redisUrl();
}

/**
 * A client with the functions loaded. Typed `Redis` for the tests written against one Redis: in the
 * cluster run it is a `Cluster`, which takes the same commands (each sent to its key's primary).
 */
export async function connectTestRedis(): Promise<Redis> {
  const redis = connectRedis(testRedisTarget(), { maxRetriesPerRequest: 1 });
  await loadFunctions(redis);
  return redis as Redis;
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
export async function snapshotTenant(redis: RedisClient, tenant: string): Promise<Record<string, unknown>> {
  const keys: string[] = [];
  let cursor = '0';
  // a tenant's keys share one slot: on a cluster they are all on the primary owning it
  const node = isCluster(redis) ? await primaryFor(redis, tenantKeyPattern(tenant)) : redis;
  do {
    const [next, batch] = await node.scan(cursor, 'MATCH', tenantKeyPattern(tenant), 'COUNT', 1000);
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
  redis: RedisClient,
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
