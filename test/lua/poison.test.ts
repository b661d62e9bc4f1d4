/**
 * Poison entries: an entry whose apply fails without an atomflow error code is counted, and after
 * WORKER_MAX_ATTEMPTS it is FAILED with the reason instead of being re-claimed forever. Operators list
 * entries with scheduledTransitions (newest first, keyset cursors). Settled entries expire.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Engine } from '../../src/engine/engine.js';
import { SchedulerWorker } from '../../src/worker/scheduler.worker.js';
import { createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

const past = () => new Date(Date.now() - 1000);

async function setup(ids: string[] = ['w-1']): Promise<string> {
  const tenant = uniqueTenant('poison');
  await engine.workflows.defineMachine(tenant, documentMachine());
  for (const id of ids) await engine.workflows.start(tenant, { id, machine: 'doc' });
  return tenant;
}

describe('poison entries', () => {
  it('counts failed attempts of a Redis error while checking, then FAILS the entry with ATTEMPTS_EXHAUSTED', async () => {
    const tenant = await setup();
    const k = engine.context.keys(tenant);
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    // the workflow's history is not a list any more: every check fails with WRONGTYPE
    await redis.del(k.workflowHistory('w-1'));
    await redis.set(k.workflowHistory('w-1'), 'not a list');
    const workflowBefore = await redis.hgetall(k.workflow('w-1'));

    const first = await engine.scheduler.apply(tenant, 's-1', { maxAttempts: 3 });
    expect(first).toMatchObject({ status: 'PENDING', attempts: 1, executedAt: null });
    expect(first.error).toMatch(/WRONGTYPE/);
    expect(await redis.zscore(k.scheduleDue(), 's-1')).not.toBeNull();
    expect(await engine.scheduler.apply(tenant, 's-1', { maxAttempts: 3 })).toMatchObject({ status: 'PENDING', attempts: 2 });
    const failed = await engine.scheduler.apply(tenant, 's-1', { maxAttempts: 3 });
    expect(failed).toMatchObject({ status: 'FAILED', attempts: 3 });
    expect(failed.error).toMatch(/^ATTEMPTS_EXHAUSTED 3 attempts failed, the last with: .*WRONGTYPE/);
    expect(failed.executedAt).toBeInstanceOf(Date);
    expect(await redis.zscore(k.scheduleDue(), 's-1')).toBeNull();
    expect(await redis.hgetall(k.workflow('w-1'))).toEqual(workflowBefore);
    // settled: applying again changes nothing
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.scheduler.apply(tenant, 's-1', { maxAttempts: 3 })).toEqual(failed);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });

  it('counts a call that fails after its checks (a Redis error while writing) through sched_attempt_failed', async () => {
    const tenant = await setup();
    const k = engine.context.keys(tenant);
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    // the listing index is not a sorted set: the transition's first write fails
    await redis.del(k.indexAll());
    await redis.set(k.indexAll(), 'x');
    const workflowBefore = await redis.hgetall(k.workflow('w-1'));
    for (let attempt = 1; attempt < 5; attempt++) {
      const entry = await engine.scheduler.apply(tenant, 's-1');
      expect(entry).toMatchObject({ status: 'PENDING', attempts: attempt });
      expect(entry.error).toMatch(/WRONGTYPE/);
    }
    const failed = await engine.scheduler.apply(tenant, 's-1');
    expect(failed).toMatchObject({ status: 'FAILED', attempts: 5 });
    expect(failed.error).toMatch(/^ATTEMPTS_EXHAUSTED 5 attempts failed/);
    expect(await redis.hgetall(k.workflow('w-1'))).toEqual(workflowBefore);
  });

  it('the worker gives up after maxAttempts ticks instead of re-claiming the entry forever', async () => {
    const tenant = await setup();
    const k = engine.context.keys(tenant);
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    await redis.del(k.workflowHistory('w-1'));
    await redis.set(k.workflowHistory('w-1'), 'x');
    const logged: string[] = [];
    // lease 1 ms: the entry is claimable again at the next tick
    const worker = new SchedulerWorker(engine, { tenants: [tenant], leaseMs: 1, maxAttempts: 2, log: (l) => logged.push(l) });
    expect(await worker.tick()).toBe(0);
    expect(logged[0]).toMatch(/attempt 1 of 2 to apply .*s-1 failed: .*WRONGTYPE/);
    await expect.poll(async () => (await redis.zscore(k.scheduleDue(), 's-1')) !== null && Number(await redis.zscore(k.scheduleDue(), 's-1')) < Date.now()).toBe(true);
    expect(await worker.tick()).toBe(1);
    expect((await engine.scheduler.get(tenant, 's-1'))?.status).toBe('FAILED');
    expect(await worker.tick()).toBe(0);
    expect(await redis.zcard(k.scheduleDue())).toBe(0);
  });

  it('does not count an atomflow refusal or a DONE entry as an attempt', async () => {
    const tenant = await setup(['w-1', 'w-2']);
    await engine.scheduler.schedule(tenant, { id: 'ok', workflowId: 'w-1', to: 'review', runAt: past() });
    await engine.scheduler.schedule(tenant, { id: 'bad', workflowId: 'w-2', to: 'published', runAt: past() });
    expect(await engine.scheduler.apply(tenant, 'ok')).toMatchObject({ status: 'DONE', attempts: 0, error: null });
    expect(await engine.scheduler.apply(tenant, 'bad')).toMatchObject({ status: 'FAILED', attempts: 0 });
  });
});

describe('scheduledTransitions listing', () => {
  it('pages newest first with a cursor that neither repeats nor skips when entries are added between pages', async () => {
    const tenant = await setup();
    const future = new Date(Date.now() + 3_600_000);
    const created = [];
    for (let i = 0; i < 7; i++) created.push(await engine.scheduler.schedule(tenant, { id: `s-${i}`, workflowId: 'w-1', to: 'review', runAt: future }));
    const expected = [...created]
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? -1 : 1))
      .map((e) => e.id);
    const page1 = await engine.scheduler.list(tenant, { first: 3 });
    expect(page1.items.map((e) => e.id)).toEqual(expected.slice(0, 3));
    // inserts between pages
    for (let i = 7; i < 10; i++) await engine.scheduler.schedule(tenant, { id: `s-${i}`, workflowId: 'w-1', to: 'review', runAt: future });
    const rest: string[] = [];
    let after = page1.nextCursor;
    while (after !== null) {
      const page = await engine.scheduler.list(tenant, { first: 3, after });
      rest.push(...page.items.map((e) => e.id));
      after = page.nextCursor;
    }
    // entries created in the same millisecond as the cursor's (ties ordered by id) may follow it;
    // none is repeated, none of the first seven skipped
    const added = ['s-7', 's-8', 's-9'];
    expect(new Set(rest).size).toBe(rest.length);
    expect(rest.filter((id) => !added.includes(id))).toEqual(expected.slice(3));
    expect(page1.items[0]).toEqual(await engine.scheduler.get(tenant, page1.items[0]!.id));
  });

  it('filters by status, each entry listed under its current status only', async () => {
    const tenant = await setup(['w-1', 'w-2']);
    await engine.scheduler.schedule(tenant, { id: 'a', workflowId: 'w-1', to: 'review', runAt: past() });
    await engine.scheduler.schedule(tenant, { id: 'b', workflowId: 'w-2', to: 'published', runAt: past() });
    await engine.scheduler.schedule(tenant, { id: 'c', workflowId: 'w-1', to: 'review', runAt: new Date(Date.now() + 60_000) });
    await engine.scheduler.schedule(tenant, { id: 'd', workflowId: 'w-1', to: 'review', runAt: new Date(Date.now() + 60_000) });
    await engine.scheduler.apply(tenant, 'a');
    await engine.scheduler.apply(tenant, 'b');
    await engine.scheduler.cancel(tenant, 'd');
    const ids = async (status?: 'PENDING' | 'DONE' | 'FAILED' | 'CANCELLED') =>
      (await engine.scheduler.list(tenant, { status })).items.map((e) => e.id);
    expect(await ids('PENDING')).toEqual(['c']);
    expect(await ids('DONE')).toEqual(['a']);
    expect(await ids('FAILED')).toEqual(['b']);
    expect(await ids('CANCELLED')).toEqual(['d']);
    expect((await ids()).sort()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('rejects a bad cursor, a cursor of another status, and a bad status, writing nothing', async () => {
    const tenant = await setup();
    const future = new Date(Date.now() + 60_000);
    for (let i = 0; i < 3; i++) await engine.scheduler.schedule(tenant, { id: `s-${i}`, workflowId: 'w-1', to: 'review', runAt: future });
    const pending = await engine.scheduler.list(tenant, { status: 'PENDING', first: 1 });
    const all = await engine.scheduler.list(tenant, { first: 1 });
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { status: 'DONE', after: pending.nextCursor }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { after: pending.nextCursor }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { status: 'PENDING', after: all.nextCursor }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { after: 'not a cursor' }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { status: 'NOPE' as never }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { first: 0 }), 'BAD_USER_INPUT');
  });
});

describe('retention of settled entries', () => {
  it('expires a settled entry after RETENTION_SETTLED, and the next settlement prunes it from the listings', async () => {
    const tenant = await setup(['w-1', 'w-2', 'w-3']);
    const k = engine.context.keys(tenant);
    const short = new Engine(redis, { retentionSettledMs: 100 });
    await short.scheduler.schedule(tenant, { id: 'old', workflowId: 'w-1', to: 'review', runAt: past() });
    await short.scheduler.schedule(tenant, { id: 'keep', workflowId: 'w-3', to: 'review', runAt: new Date(Date.now() + 60_000) });
    await short.scheduler.apply(tenant, 'old');
    const ttl = await redis.pttl(k.scheduleEntry('old'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100);
    expect(await redis.pttl(k.scheduleEntry('keep'))).toBe(-1); // pending entries never expire
    await expect.poll(() => redis.exists(k.scheduleEntry('old')), { interval: 20 }).toBe(0);
    // the listing skips the expired entry even before it is pruned
    expect((await short.scheduler.list(tenant, { status: 'DONE' })).items).toEqual([]);
    expect(await redis.zcard(k.scheduleIndexByStatus())).toBe(2);
    await short.scheduler.schedule(tenant, { id: 'new', workflowId: 'w-2', to: 'review', runAt: past() });
    await short.scheduler.apply(tenant, 'new');
    expect(await redis.zrange(k.scheduleIndexByStatus(), 0, -1)).toEqual([
      expect.stringMatching(/^DONE:\d{13}:new$/),
      expect.stringMatching(/^PENDING:\d{13}:keep$/),
    ]);
    expect(await redis.zrange(k.scheduleIndex(), 0, -1)).toEqual([
      expect.stringMatching(/^\d{13}:new$/),
      expect.stringMatching(/^\d{13}:keep$/),
    ]);
    // default: 7 days
    await engine.scheduler.schedule(tenant, { id: 'week', workflowId: 'w-3', to: 'review', runAt: past() });
    await engine.scheduler.cancel(tenant, 'week');
    expect(await redis.pttl(k.scheduleEntry('week'))).toBeGreaterThan(7 * 86_400_000 - 60_000);
  });
});
