/**
 * The scheduler worker finds the tenants that have due entries by itself (a SCAN over the due-set key
 * pattern from src/redis/keys.ts), on a Redis of its own so no other test's tenants are in the way;
 * WORKER_TENANTS, when given, is a filter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis, type PrivateRedis } from '../setup/private-redis.js';
import { Engine } from '../../src/engine/engine.js';
import { loadFunctions } from '../../src/redis/functions.js';
import { acrossTenants, tenantKeys } from '../../src/redis/keys.js';
import { SchedulerWorker } from '../../src/worker/scheduler.worker.js';

let server: PrivateRedis;
let redis: Redis;
let engine: Engine;

beforeAll(async () => {
  server = await startPrivateRedis(await freePort());
  redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  await loadFunctions(redis);
  engine = new Engine(redis);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

async function dueEntry(tenant: string, runAt = new Date()): Promise<string> {
  await engine.workflows.defineMachine(tenant, { name: 'light', initialState: 'off', states: ['off', 'on'], transitions: [{ from: 'off', to: ['on'] }] });
  const id = `lamp-${Math.random().toString(36).slice(2, 8)}`;
  await engine.workflows.start(tenant, { id, machine: 'light' });
  return (await engine.scheduler.schedule(tenant, { workflowId: id, to: 'on', runAt })).id;
}

describe('finding tenants with due entries', () => {
  it('builds its SCAN pattern from the key module', () => {
    const due = acrossTenants((k) => k.scheduleDue());
    const key = tenantKeys('acme.eu-1').scheduleDue();
    expect(due.pattern.replace('{*}', '{acme.eu-1}')).toBe(key);
    expect(due.tenantOf(key)).toBe('acme.eu-1');
    expect(due.tenantOf(tenantKeys('acme').scheduleEntry('x'))).toBeNull();
  });

  it('applies the due entries of every tenant, including one that appears later', async () => {
    const first = await dueEntry('alpha');
    const second = await dueEntry('beta');
    const future = await dueEntry('gamma', new Date(Date.now() + 3_600_000));
    const worker = new SchedulerWorker(engine, { redis });
    expect(worker.tenants).toBeNull();
    expect(await worker.tick()).toBe(2);
    expect((await engine.scheduler.get('alpha', first))?.status).toBe('DONE');
    expect((await engine.scheduler.get('beta', second))?.status).toBe('DONE');
    expect((await engine.scheduler.get('gamma', future))?.status).toBe('PENDING');
    const late = await dueEntry('delta');
    expect(await worker.tick()).toBe(1);
    expect((await engine.scheduler.get('delta', late))?.status).toBe('DONE');
  });

  it('with a tenant filter applies those tenants only', async () => {
    const mine = await dueEntry('mine');
    const theirs = await dueEntry('theirs');
    expect(await new SchedulerWorker(engine, { redis, tenants: ['mine'] }).tick()).toBe(1);
    expect((await engine.scheduler.get('mine', mine))?.status).toBe('DONE');
    expect((await engine.scheduler.get('theirs', theirs))?.status).toBe('PENDING');
  });

  it('scans a large keyspace a bounded number of calls per tick and still finds every tenant', async () => {
    const pipeline = redis.pipeline();
    for (let i = 0; i < 30_000; i++) pipeline.set(`noise:${i}`, '1');
    await pipeline.exec();
    const entry = await dueEntry('needle');
    const scans: number[] = [];
    const counting = { scan: (...args: unknown[]) => ((scans[scans.length - 1]! += 1), (redis.scan as (...a: unknown[]) => unknown)(...args)) };
    const probe = new SchedulerWorker(engine, { redis: counting as unknown as Redis });
    let ticks = 0;
    while ((await engine.scheduler.get('needle', entry))?.status !== 'DONE' && ticks < 20) {
      scans.push(0);
      await probe.tick();
      ticks++;
    }
    expect((await engine.scheduler.get('needle', entry))?.status).toBe('DONE');
    expect(Math.max(...scans)).toBeLessThanOrEqual(10);
  });
});
