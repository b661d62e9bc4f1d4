import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/engine/engine.js';
import type { SchedulerEngine } from '../../src/scheduler/scheduler.engine.js';
import { SchedulerWorker } from '../../src/worker/scheduler.worker.js';
import { createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
// a second connection with its own routing cache: another worker process
let redis2: Redis;
let engine2: Engine;

beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
  ({ redis: redis2, engine: engine2 } = await createTestEngine());
});
afterAll(() => {
  redis.disconnect();
  redis2.disconnect();
});

const doc = documentMachine();

const past = () => new Date(Date.now() - 1000);
const future = () => new Date(Date.now() + 3_600_000);

async function setup(ids: string[] = ['w-1']): Promise<string> {
  const tenant = uniqueTenant('sched');
  await engine.workflows.defineMachine(tenant, doc);
  for (const id of ids) await engine.workflows.start(tenant, { id, machine: 'doc' });
  return tenant;
}

/** The events of the tenant's stream, decoded. */
async function streamEvents(tenant: string): Promise<Record<string, unknown>[]> {
  const entries = await redis.xrange(engine.context.keys(tenant).events(), '-', '+');
  return entries.map(([, fields]) => JSON.parse(fields[fields.indexOf('data') + 1]!) as Record<string, unknown>);
}

/** What a transition writes for one workflow: its hash, its history, and the tenant's event stream. */
async function workflowFootprint(tenant: string, id: string) {
  const k = engine.context.keys(tenant);
  return {
    hash: await redis.hgetall(k.workflow(id)),
    history: await redis.lrange(k.workflowHistory(id), 0, -1),
    events: await redis.xrange(k.events(), '-', '+'),
  };
}

describe('scheduling', () => {
  it('creates a PENDING entry in the due set, readable with get', async () => {
    const tenant = await setup();
    const runAt = future();
    const entry = await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt, metadata: { by: 'cron' } });
    expect(entry).toEqual({
      id: 's-1', workflowId: 'w-1', to: 'review', runAt, status: 'PENDING', error: null, executedAt: null,
      createdAt: expect.any(Date), attempts: 0,
    });
    expect(Math.abs(entry.createdAt.getTime() - Date.now())).toBeLessThan(5000);
    expect(await engine.scheduler.get(tenant, 's-1')).toEqual(entry);
    expect(await engine.scheduler.get(tenant, 'ghost')).toBeNull();
    const k = engine.context.keys(tenant);
    expect(await redis.zrange(k.scheduleDue(), 0, -1, 'WITHSCORES')).toEqual(['s-1', String(runAt.getTime())]);

    const generated = await engine.scheduler.schedule(tenant, { workflowId: 'w-1', to: 'review', runAt });
    expect(generated.id).toMatch(/^[0-9a-f-]{36}$/);
    // the largest Date keeps every digit (cjson would round it to 14)
    const far = new Date(8_640_000_000_000_000 - 1);
    expect((await engine.scheduler.schedule(tenant, { id: 's-far', workflowId: 'w-1', to: 'review', runAt: far })).runAt).toEqual(far);
  });

  it('accepts a target not allowed from the current state, and decides it when it runs', async () => {
    const tenant = await setup();
    // draft -> published is not allowed now; the workflow may have moved on by runAt
    const entry = await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'published', runAt: past() });
    expect(entry.status).toBe('PENDING');
    await engine.workflows.transition(tenant, { id: 'w-1', to: 'review' });
    const done = await engine.scheduler.apply(tenant, 's-1');
    expect(done).toMatchObject({ status: 'DONE', error: null });
    expect((await engine.workflows.get(tenant, 'w-1'))).toMatchObject({ state: 'published', version: 3 });
  });

  it('rejects unknown workflows, duplicate ids, unknown states and bad input without writing', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: future() });
    const ok = { id: 's-2', workflowId: 'w-1', to: 'review', runAt: future() };
    // loose input on purpose: what an untyped caller could send
    const schedule = (input: Record<string, unknown>) => () =>
      engine.scheduler.schedule(tenant, { ...ok, ...input } as unknown as typeof ok);

    await expectRejectedWithoutWrites(redis, tenant, schedule({ workflowId: 'ghost' }), 'NOT_FOUND');
    const dup = await expectRejectedWithoutWrites(redis, tenant, schedule({ id: 's-1', to: 'published' }), 'IDEMPOTENCY_CONFLICT');
    expect(dup.message).toContain('s-1');
    const unknown = await expectRejectedWithoutWrites(redis, tenant, schedule({ to: 'nowhere' }), 'BAD_USER_INPUT');
    expect(unknown.message).toContain('nowhere');
    for (const input of [
      { id: 'a:b' },
      { id: '' },
      { workflowId: 'a{b}' },
      { to: 'has space' },
      { runAt: new Date(Number.NaN) },
      { runAt: new Date(-1) },
      { runAt: '2030-01-01T00:00:00Z' },
      { metadata: ['not', 'an', 'object'] },
      { metadata: { blob: 'x'.repeat(16 * 1024) } },
    ]) {
      await expectRejectedWithoutWrites(redis, tenant, schedule(input), 'BAD_USER_INPUT');
    }
  });

  it('checks the target against the machine version the workflow runs', async () => {
    const tenant = await setup(['old']);
    await engine.workflows.defineMachine(tenant, {
      ...doc,
      states: [...doc.states, 'extra'],
      transitions: [...doc.transitions, { from: 'draft', to: ['review', 'extra'] }],
    });
    await engine.workflows.start(tenant, { id: 'new', machine: 'doc' });
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'old', to: 'extra', runAt: future() }),
      'BAD_USER_INPUT',
    );
    expect((await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'new', to: 'extra', runAt: future() })).status).toBe('PENDING');
  });

  it('rejects bad input in Lua as well, when the typed layer is bypassed', async () => {
    const tenant = await setup();
    const k = engine.context.keys(tenant);
    const keys = [...k.scheduleKeys('s-1'), k.workflow('w-1'), k.machine('doc')];
    const create = (...args: string[]) => redis.call('FCALL', 'atomflow_sched_create', keys.length, ...keys, ...args);
    const before = await snapshotTenant(redis, tenant);
    await expect(create('a{b}', 'w-1', 'doc', 'review', '0', '[]')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(create('s-1', 'w-1', 'doc', 'review', '-5', '[]')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(create('s-1', 'w-1', 'doc', 'review', '8640000000000001', '[]')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(create('s-1', 'w-1', 'doc', 'review', '1.5', '[]')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(create('s-1', 'w-1', 'doc', 'review', '0', '{"not":"pairs"')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(create('s-1', 'w-1', 'doc', 'nowhere', '0', '[]')).rejects.toThrow(/^BAD_USER_INPUT /);
    // routing data that does not match the stored workflow
    await expect(create('s-1', 'w-1', 'other', 'review', '0', '[]')).rejects.toThrow(/^STALE_KEYS /);
    const ghostKeys = [...k.scheduleKeys('s-1'), k.workflow('ghost'), k.machine('doc')];
    await expect(redis.call('FCALL', 'atomflow_sched_create', 6, ...ghostKeys, 's-1', 'ghost', 'doc', 'review', '0', '[]')).rejects.toThrow(/^NOT_FOUND /);
    await expect(redis.call('FCALL', 'atomflow_sched_claim', 1, k.scheduleDue(), '0', '1000')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(redis.call('FCALL', 'atomflow_sched_claim', 1, k.scheduleDue(), '10', '0')).rejects.toThrow(/^BAD_USER_INPUT /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.claimDue(tenant, { limit: 0, leaseMs: 1000 }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.claimDue(tenant, { limit: 10, leaseMs: 1.5 }), 'BAD_USER_INPUT');
  });
});

describe('cancelling', () => {
  it('cancels a pending entry, which the worker then never applies', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    const cancelled = await engine.scheduler.cancel(tenant, 's-1');
    expect(cancelled).toMatchObject({ id: 's-1', status: 'CANCELLED', error: null, executedAt: null });
    expect(await redis.zcard(engine.context.keys(tenant).scheduleDue())).toBe(0);
    expect(await new SchedulerWorker(engine, { tenants: [tenant] }).tick()).toBe(0);
    expect(await engine.workflows.get(tenant, 'w-1')).toMatchObject({ state: 'draft', version: 1 });
  });

  it('answers NOT_FOUND for an unknown entry and STATE_CONFLICT once it is no longer pending', async () => {
    const tenant = await setup();
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.cancel(tenant, 'ghost'), 'NOT_FOUND');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.cancel(tenant, 'a:b'), 'BAD_USER_INPUT');
    await engine.scheduler.schedule(tenant, { id: 'gone', workflowId: 'w-1', to: 'review', runAt: future() });
    await engine.scheduler.cancel(tenant, 'gone');
    const again = await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.cancel(tenant, 'gone'), 'STATE_CONFLICT');
    expect(again.message).toContain('CANCELLED');
    await engine.scheduler.schedule(tenant, { id: 'ran', workflowId: 'w-1', to: 'review', runAt: past() });
    expect((await engine.scheduler.apply(tenant, 'ran')).status).toBe('DONE');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.cancel(tenant, 'ran'), 'STATE_CONFLICT');
  });
});

describe('applying', () => {
  it('the worker applies a due entry (state, history, event) and leaves a future one alone', async () => {
    const tenant = await setup(['w-1', 'w-2']);
    const k = engine.context.keys(tenant);
    const sub = redis.duplicate();
    const received: Record<string, unknown>[] = [];
    await sub.subscribe(k.workflowChannel());
    sub.on('message', (_channel, message: string) => received.push(JSON.parse(message) as Record<string, unknown>));

    const due = await engine.scheduler.schedule(tenant, { id: 's-due', workflowId: 'w-1', to: 'review', runAt: past(), metadata: { by: 'scheduler' } });
    const later = await engine.scheduler.schedule(tenant, { id: 's-later', workflowId: 'w-2', to: 'review', runAt: future() });
    const worker = new SchedulerWorker(engine, { tenants: [tenant] });
    expect(await worker.tick()).toBe(1);

    const done = await engine.scheduler.get(tenant, 's-due');
    expect(done).toMatchObject({ status: 'DONE', error: null, runAt: due.runAt });
    expect(done!.executedAt!.getTime()).toBeGreaterThanOrEqual(due.runAt.getTime());
    const wf = await engine.workflows.get(tenant, 'w-1');
    expect(wf).toMatchObject({ state: 'review', version: 2, metadata: { by: 'scheduler' } });
    const history = await engine.workflows.history(tenant, 'w-1', {});
    expect(history.items.map((e) => [e.from, e.to, e.version, e.metadata])).toEqual([
      [null, 'draft', 1, {}],
      ['draft', 'review', 2, { by: 'scheduler' }],
    ]);
    await expect.poll(() => received.filter((e) => e.version === 2)).toHaveLength(1);
    expect(received.find((e) => e.version === 2)).toMatchObject({
      type: 'WORKFLOW_TRANSITION', workflowId: 'w-1', machine: 'doc', from: 'draft', to: 'review', metadata: { by: 'scheduler' },
    });
    expect((await streamEvents(tenant)).filter((e) => e.version === 2)).toHaveLength(1);

    expect(await engine.scheduler.get(tenant, 's-later')).toEqual(later);
    expect(await engine.workflows.get(tenant, 'w-2')).toMatchObject({ state: 'draft', version: 1 });
    expect(await redis.zrange(k.scheduleDue(), 0, -1)).toEqual(['s-later']);
    expect(await worker.tick()).toBe(0);
    sub.disconnect();
  });

  it('marks an entry FAILED with INVALID_TRANSITION when the workflow moved on, leaving the workflow untouched', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    await engine.workflows.transition(tenant, { id: 'w-1', to: 'review' }); // review -> review is not allowed
    const before = await workflowFootprint(tenant, 'w-1');
    expect(await new SchedulerWorker(engine, { tenants: [tenant] }).tick()).toBe(1);
    const failed = await engine.scheduler.get(tenant, 's-1');
    expect(failed).toMatchObject({ status: 'FAILED' });
    expect(failed!.error).toBe('INVALID_TRANSITION cannot move workflow w-1 from review to review');
    expect(failed!.executedAt).toBeInstanceOf(Date);
    expect(await workflowFootprint(tenant, 'w-1')).toEqual(before);
    expect(await redis.zcard(engine.context.keys(tenant).scheduleDue())).toBe(0);
  });

  it('marks an entry FAILED with NOT_FOUND when its workflow is gone', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    await redis.del(engine.context.keys(tenant).workflow('w-1'));
    // engine2 has no cached route: the workflow is unknown to it
    const failed = await engine2.scheduler.apply(tenant, 's-1');
    expect(failed.status).toBe('FAILED');
    expect(failed.error).toMatch(/^NOT_FOUND /);
  });

  it('changes nothing when applying an entry that is DONE, FAILED or CANCELLED', async () => {
    const tenant = await setup(['w-1', 'w-2', 'w-3']);
    await engine.scheduler.schedule(tenant, { id: 'done', workflowId: 'w-1', to: 'review', runAt: past() });
    await engine.scheduler.schedule(tenant, { id: 'failed', workflowId: 'w-2', to: 'published', runAt: past() });
    await engine.scheduler.schedule(tenant, { id: 'cancelled', workflowId: 'w-3', to: 'review', runAt: past() });
    expect((await engine.scheduler.apply(tenant, 'done')).status).toBe('DONE');
    expect((await engine.scheduler.apply(tenant, 'failed')).status).toBe('FAILED');
    await engine.scheduler.cancel(tenant, 'cancelled');
    // make every transition valid again, so a second apply would have something to do
    await engine.workflows.transition(tenant, { id: 'w-1', to: 'draft' });
    await engine.workflows.transition(tenant, { id: 'w-2', to: 'review' });
    for (const [id, status] of [['done', 'DONE'], ['failed', 'FAILED'], ['cancelled', 'CANCELLED']] as const) {
      const stored = await engine.scheduler.get(tenant, id);
      const before = await snapshotTenant(redis, tenant);
      const reply = await engine.scheduler.apply(tenant, id);
      expect(reply.status).toBe(status);
      expect(reply).toEqual(stored);
      expect(await snapshotTenant(redis, tenant)).toEqual(before);
    }
    await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.apply(tenant, 'ghost'), 'NOT_FOUND');
  });

  it('re-reads the route and retries when its keys are stale', async () => {
    const tenant = await setup();
    await engine.workflows.defineMachine(tenant, { ...doc, name: 'other' });
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    const k = engine.context.keys(tenant);
    // the workflow is re-created under another machine; engine still has the old route cached
    await redis.del(k.workflow('w-1'), k.workflowHistory('w-1'));
    await engine2.workflows.start(tenant, { id: 'w-1', machine: 'other' });

    const block = k.workflowBlock('w-1', 'doc');
    const before = await snapshotTenant(redis, tenant);
    await expect(
      redis.call('FCALL', 'atomflow_sched_apply', 4 + block.length, ...k.scheduleKeys('s-1'), ...block,
        ...engine.context.eventArgs(k), 's-1', 'w-1', 'doc', '', '', 5, 60_000),
    ).rejects.toThrow(/^STALE_KEYS /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);

    expect((await engine.scheduler.apply(tenant, 's-1')).status).toBe('DONE');
    expect(await engine.workflows.get(tenant, 'w-1')).toMatchObject({ machine: 'other', state: 'review', version: 2 });
  });

  it('applies each of 50 due entries exactly once when two workers race', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `w-${i}`);
    const tenant = await setup(ids);
    for (const id of ids) await engine.scheduler.schedule(tenant, { id: `s-${id}`, workflowId: id, to: 'review', runAt: past() });
    const a = new SchedulerWorker(engine, { tenants: [tenant], batchSize: 7 });
    const b = new SchedulerWorker(engine2, { tenants: [tenant], batchSize: 7 });
    const [byA, byB] = await Promise.all([a.tick(), b.tick()]);
    // claims are disjoint: together they applied 50, not more
    expect(byA + byB).toBe(50);

    for (const id of ids) {
      expect((await engine.scheduler.get(tenant, `s-${id}`))?.status).toBe('DONE');
      expect((await engine.workflows.get(tenant, id))?.version).toBe(2);
    }
    const transitions = (await streamEvents(tenant)).filter((e) => e.type === 'WORKFLOW_TRANSITION' && e.version === 2);
    expect(transitions).toHaveLength(50);
    expect(new Set(transitions.map((e) => e.workflowId)).size).toBe(50);
  });

  it('applies each entry once even when two engines apply the same 50 entries at the same time', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `w-${i}`);
    const tenant = await setup(ids);
    for (const id of ids) await engine.scheduler.schedule(tenant, { id: `s-${id}`, workflowId: id, to: 'review', runAt: past() });
    const results = await Promise.all(
      ids.flatMap((id) => [engine.scheduler.apply(tenant, `s-${id}`), engine2.scheduler.apply(tenant, `s-${id}`)]),
    );
    expect(results.every((r) => r.status === 'DONE')).toBe(true);
    for (const id of ids) expect((await engine.workflows.get(tenant, id))?.version).toBe(2);
    const transitions = (await streamEvents(tenant)).filter((e) => e.type === 'WORKFLOW_TRANSITION' && e.version === 2);
    expect(transitions).toHaveLength(50);
    expect(new Set(transitions.map((e) => e.workflowId)).size).toBe(50);
  });

  it('makes an entry whose claimant died claimable again after the lease, then applies it once', async () => {
    const tenant = await setup();
    const k = engine.context.keys(tenant);
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    // the "dead" worker claims it and never applies it
    expect(await engine.scheduler.claimDue(tenant, { limit: 10, leaseMs: 500 })).toEqual(['s-1']);
    const leaseEnd = Number(await redis.zscore(k.scheduleDue(), 's-1'));

    const survivor = new SchedulerWorker(engine2, { tenants: [tenant] });
    expect(await engine2.scheduler.claimDue(tenant, { limit: 10, leaseMs: 500 })).toEqual([]);
    expect(await survivor.tick()).toBe(0);
    expect((await engine.scheduler.get(tenant, 's-1'))?.status).toBe('PENDING');

    let applied = 0;
    await expect.poll(async () => (applied += await survivor.tick()), { timeout: 5000, interval: 50 }).toBe(1);
    const done = await engine.scheduler.get(tenant, 's-1');
    expect(done?.status).toBe('DONE');
    expect(done!.executedAt!.getTime()).toBeGreaterThanOrEqual(leaseEnd);
    expect(await engine.workflows.get(tenant, 'w-1')).toMatchObject({ state: 'review', version: 2 });

    // the dead worker wakes up and applies its claim: nothing changes
    const before = await snapshotTenant(redis, tenant);
    expect((await engine.scheduler.apply(tenant, 's-1')).status).toBe('DONE');
    expect(await survivor.tick()).toBe(0);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    expect((await streamEvents(tenant)).filter((e) => e.version === 2)).toHaveLength(1);
  });

  it('refunds and restocks once when a scheduled transition cancels an order', async () => {
    const tenant = uniqueTenant('sched');
    await engine.workflows.ensureOrderMachine(tenant);
    await engine.orders.restock(tenant, 'p-1', 10);
    await engine.orders.deposit(tenant, 'u-1', 10_000);
    await engine.orders.processOrder(tenant, { orderId: 'o-1', userId: 'u-1', productId: 'p-1', quantity: 2, unitPriceCents: 1500 });
    expect(await engine.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 8 });
    expect(await engine.orders.account(tenant, 'u-1')).toEqual({ id: 'u-1', balanceCents: 7000 });

    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'o-1', to: 'cancelled', runAt: past() });
    // a worker on another connection, which has to look the order's route up
    expect(await new SchedulerWorker(engine2, { tenants: [tenant] }).tick()).toBe(1);
    expect((await engine.scheduler.get(tenant, 's-1'))?.status).toBe('DONE');
    expect((await engine.orders.order(tenant, 'o-1'))?.state).toBe('cancelled');
    expect(await engine.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 10 });
    expect(await engine.orders.account(tenant, 'u-1')).toEqual({ id: 'u-1', balanceCents: 10_000 });
    expect((await streamEvents(tenant)).filter((e) => e.type === 'ORDER_CANCELLED')).toHaveLength(1);

    const before = await snapshotTenant(redis, tenant);
    expect((await engine2.scheduler.apply(tenant, 's-1')).status).toBe('DONE');
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });
});

describe('the worker loop', () => {
  it('applies due entries on its own and leaves no timer once stopped', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    // only the worker's timers are faked; Redis I/O and expect.poll run for real
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const worker = new SchedulerWorker(engine, { tenants: [tenant], tickMs: 1000 });
      worker.start();
      worker.start(); // a second start does not add a loop
      expect(vi.getTimerCount()).toBe(1);
      await vi.advanceTimersByTimeAsync(0);
      await expect.poll(async () => (await engine.scheduler.get(tenant, 's-1'))?.status).toBe('DONE');
      // the tick has ended and the next one waits on its timer
      await expect.poll(() => vi.getTimerCount()).toBe(1);
      await worker.stop();
      expect(worker.isRunning).toBe(false);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('stop() waits for the tick in flight', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let applyStarted = false;
    const gated: Pick<SchedulerEngine, 'claimDue' | 'apply'> = {
      claimDue: (t, o) => engine.scheduler.claimDue(t, o),
      apply: async (t, id) => {
        applyStarted = true;
        await gate;
        return engine.scheduler.apply(t, id);
      },
    };
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const worker = new SchedulerWorker({ scheduler: gated }, { tenants: [tenant], tickMs: 20 });
      worker.start();
      await vi.advanceTimersByTimeAsync(0);
      await expect.poll(() => applyStarted).toBe(true);
      let stopped = false;
      const stopping = worker.stop().then(() => (stopped = true));
      await new Promise((resolve) => setImmediate(resolve));
      expect(stopped).toBe(false);
      release();
      await stopping;
      expect((await engine.scheduler.get(tenant, 's-1'))?.status).toBe('DONE');
      // the tick that ended after stop() scheduled no next one
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('logs a failing tick and keeps going', async () => {
    const tenant = await setup();
    await engine.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'review', runAt: past() });
    let failures = 1;
    const flaky: Pick<SchedulerEngine, 'claimDue' | 'apply'> = {
      claimDue: async (t, o) => {
        if (failures-- > 0) throw new Error('connection lost');
        return engine.scheduler.claimDue(t, o);
      },
      apply: (t, id) => engine.scheduler.apply(t, id),
    };
    const logged: string[] = [];
    const worker = new SchedulerWorker({ scheduler: flaky }, { tenants: [tenant], tickMs: 10, log: (line) => logged.push(line) });
    worker.start();
    await expect.poll(async () => (await engine.scheduler.get(tenant, 's-1'))?.status).toBe('DONE');
    await worker.stop();
    // the failed claims are logged once, then the entry's own line once it is applied
    expect(logged).toHaveLength(2);
    expect(logged[0]).toContain('connection lost');
    expect(logged[1]).toBe('scheduled transition s-1 applied');
  });
});
