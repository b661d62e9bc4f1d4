/**
 * Every mutation is safe to retry: a client that lost the reply sends it again and nothing is applied
 * twice. depositFunds / restockProduct by requestId, scheduleTransition by entry id,
 * defineStateMachine by its definition.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Engine } from '../../src/engine/engine.js';
import { createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

describe('depositFunds and restockProduct with a requestId', () => {
  it('answers a repeated deposit with the first result and adds the money once', async () => {
    const tenant = uniqueTenant('retry');
    const first = await engine.orders.deposit(tenant, 'a-1', 500, { requestId: 'r-1' });
    expect(first).toEqual({ id: 'a-1', balanceCents: 500 });
    await engine.orders.deposit(tenant, 'a-1', 100); // another deposit meanwhile, without requestId
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.orders.deposit(tenant, 'a-1', 500, { requestId: 'r-1' })).toEqual(first);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    expect(await engine.orders.account(tenant, 'a-1')).toEqual({ id: 'a-1', balanceCents: 600 });
    // without a requestId every call adds
    await engine.orders.deposit(tenant, 'a-1', 100);
    expect((await engine.orders.account(tenant, 'a-1'))?.balanceCents).toBe(700);
  });

  it('answers a repeated restock with the first result and adds the units once', async () => {
    const tenant = uniqueTenant('retry');
    const first = await engine.orders.restock(tenant, 'p-1', 7, { requestId: 'r-1' });
    expect(first).toEqual({ id: 'p-1', stock: 7 });
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.orders.restock(tenant, 'p-1', 7, { requestId: 'r-1' })).toEqual(first);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    expect(await engine.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 7 });
  });

  it('refuses the same requestId with other arguments or another mutation: IDEMPOTENCY_CONFLICT, nothing written', async () => {
    const tenant = uniqueTenant('retry');
    await engine.orders.deposit(tenant, 'a-1', 500, { requestId: 'r-1' });
    await engine.orders.deposit(tenant, 'a-2', 1);
    await engine.orders.restock(tenant, 'p-1', 1);
    for (const call of [
      () => engine.orders.deposit(tenant, 'a-1', 501, { requestId: 'r-1' }),
      () => engine.orders.deposit(tenant, 'a-2', 500, { requestId: 'r-1' }),
      () => engine.orders.restock(tenant, 'p-1', 500, { requestId: 'r-1' }),
    ]) {
      const err = await expectRejectedWithoutWrites(redis, tenant, call, 'IDEMPOTENCY_CONFLICT');
      expect(err.message).toContain('r-1');
    }
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.deposit(tenant, 'a-1', 1, { requestId: 'r:1' }), 'BAD_USER_INPUT');
  });

  it('remembers a requestId for IDEMPOTENCY_TTL (24 h by default, configurable)', async () => {
    const tenant = uniqueTenant('retry');
    const k = engine.context.keys(tenant);
    await engine.orders.deposit(tenant, 'a-1', 5, { requestId: 'r-1' });
    const ttl = await redis.pttl(k.request('r-1'));
    expect(ttl).toBeGreaterThan(24 * 3_600_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(24 * 3_600_000);

    const short = new Engine(redis, { idempotencyTtlMs: 50 });
    await short.orders.restock(tenant, 'p-1', 1, { requestId: 'r-2' });
    expect(await redis.pttl(k.request('r-2'))).toBeLessThanOrEqual(50);
    // once forgotten, the same requestId applies again
    await expect.poll(() => redis.exists(k.request('r-2')), { interval: 20, timeout: 2000 }).toBe(0);
    expect(await short.orders.restock(tenant, 'p-1', 1, { requestId: 'r-2' })).toEqual({ id: 'p-1', stock: 2 });
  });

  it('checks the request key and requestId in Lua too', async () => {
    const tenant = uniqueTenant('retry');
    const k = engine.context.keys(tenant);
    await engine.orders.deposit(tenant, 'a-1', 5, { requestId: 'r-1' });
    const before = await snapshotTenant(redis, tenant);
    // a request key without requestId, a requestId without its key, another requestId's key
    await expect(redis.call('FCALL', 'atomflow_account_deposit', 2, k.accountBalance('a-1'), k.request('r-2'), 'a-1', '5')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(redis.call('FCALL', 'atomflow_account_deposit', 1, k.accountBalance('a-1'), 'a-1', '5', 'r-2', '1000')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(redis.call('FCALL', 'atomflow_account_deposit', 2, k.accountBalance('a-1'), k.request('r-1'), 'a-1', '5', 'r-2', '1000')).rejects.toThrow(/^STALE_KEYS /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });
});

describe('scheduleTransition with an id', () => {
  async function setup(): Promise<string> {
    const tenant = uniqueTenant('retry');
    await engine.workflows.defineMachine(tenant, documentMachine());
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await engine.workflows.start(tenant, { id: 'w-2', machine: 'doc' });
    return tenant;
  }

  it('answers the same id and parameters with the stored entry, writing nothing', async () => {
    const tenant = await setup();
    const runAt = new Date(Date.now() + 3_600_000);
    const input = { id: 's-1', workflowId: 'w-1', to: 'review', runAt, metadata: { a: 1, b: [2] } };
    const first = await engine.scheduler.schedule(tenant, input);
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.scheduler.schedule(tenant, input)).toEqual(first);
    // the same metadata with its keys in another order is the same request
    expect(await engine.scheduler.schedule(tenant, { ...input, metadata: { b: [2], a: 1 } })).toEqual(first);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });

  it('answers a retry after the entry ran with the entry as it is now (DONE), applying nothing again', async () => {
    const tenant = await setup();
    const input = { id: 's-1', workflowId: 'w-1', to: 'review', runAt: new Date(Date.now() - 1000) };
    await engine.scheduler.schedule(tenant, input);
    await engine.scheduler.apply(tenant, 's-1');
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.scheduler.schedule(tenant, input)).toMatchObject({ id: 's-1', status: 'DONE' });
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });

  it('refuses the same id with other parameters: IDEMPOTENCY_CONFLICT, nothing written', async () => {
    const tenant = await setup();
    const runAt = new Date(Date.now() + 3_600_000);
    const input = { id: 's-1', workflowId: 'w-1', to: 'review', runAt, metadata: { a: 1 } };
    await engine.scheduler.schedule(tenant, input);
    for (const change of [
      { to: 'published' },
      { runAt: new Date(runAt.getTime() + 1) },
      { metadata: { a: 2 } },
      { metadata: null },
      { workflowId: 'w-2' },
    ]) {
      await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.schedule(tenant, { ...input, ...change }), 'IDEMPOTENCY_CONFLICT');
    }
  });
});

describe('defineStateMachine with the current definition', () => {
  it('returns the current version instead of adding one', async () => {
    const tenant = uniqueTenant('retry');
    const doc = documentMachine();
    const v1 = await engine.workflows.defineMachine(tenant, doc);
    expect(v1.version).toBe(1);
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.workflows.defineMachine(tenant, doc)).toEqual(v1);
    // the same machine written differently: split rules, explicit default terminal states
    const rewritten = {
      ...doc,
      transitions: [{ from: 'draft', to: ['review'] }, { from: 'review', to: ['draft'] }, { from: 'review', to: ['published'] }, { from: 'published', to: ['archived'] }],
      terminalStates: ['archived'],
    };
    expect(await engine.workflows.defineMachine(tenant, rewritten)).toEqual(v1);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);

    const changed = await engine.workflows.defineMachine(tenant, { ...doc, transitions: [...doc.transitions, { from: 'archived', to: ['draft'] }] });
    expect(changed.version).toBe(2);
    // defining version 1 again is a change from version 2: version 3
    expect((await engine.workflows.defineMachine(tenant, doc)).version).toBe(3);
    expect((await engine.workflows.defineMachine(tenant, doc)).version).toBe(3);
  });
});
