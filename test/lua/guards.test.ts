/**
 * Guards that once could be removed without any test noticing (issue 6, surviving mutants): the order
 * routing check, the STALE_KEYS retry, the refund overflow guard, the monotonic updatedAt, and the
 * workflowId check of sched_apply.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/engine/engine.js';
import { createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
// another server process, with a routing cache of its own
let engine2: Engine;
let redis2: Redis;
beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
  ({ redis: redis2, engine: engine2 } = await createTestEngine());
});
afterAll(() => {
  redis.disconnect();
  redis2.disconnect();
});

async function shop(): Promise<string> {
  const tenant = uniqueTenant('guard');
  await engine.workflows.defineMachine(tenant, documentMachine());
  await engine.orders.restock(tenant, 'p-1', 10);
  await engine.orders.deposit(tenant, 'a-1', 10_000);
  return tenant;
}

describe('order routing', () => {
  it('refuses to move an order with the key block of a plain workflow (no product, account keys)', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    await engine.orders.processOrder(tenant, { orderId: 'o-1', userId: 'a-1', productId: 'p-1', quantity: 2, unitPriceCents: 100 });
    const before = await snapshotTenant(redis, tenant);
    await expect(
      redis.call('FCALL', 'atomflow_wf_transition', 8, ...k.workflowBlock('o-1', 'order'), ...engine.context.eventArgs(k), 'o-1', 'order', 'a-1', 'p-1', 'cancelled', '', '', '[]'),
    ).rejects.toThrow(/^STALE_KEYS /);
    // and with the routing of another account or product in ARGV
    await expect(
      redis.call('FCALL', 'atomflow_wf_transition', 11, ...k.workflowBlock('o-1', 'order', { userId: 'a-1', productId: 'p-1' }), ...engine.context.eventArgs(k), 'o-1', 'order', 'a-2', 'p-1', 'cancelled', '', '', '[]'),
    ).rejects.toThrow(/^STALE_KEYS /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });

  it('re-reads a stale cached route (a workflow id re-created as an order) and refunds the order once', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    await engine.workflows.start(tenant, { id: 'x', machine: 'doc' });
    expect((await engine.workflows.get(tenant, 'x'))?.kind).toBe('workflow'); // engine caches x as a plain workflow
    await redis.del(k.workflow('x'), k.workflowHistory('x'));
    await engine2.orders.processOrder(tenant, { orderId: 'x', userId: 'a-1', productId: 'p-1', quantity: 2, unitPriceCents: 100 });
    const cancelled = await engine.workflows.transition(tenant, { id: 'x', to: 'cancelled' });
    expect(cancelled).toMatchObject({ kind: 'order', state: 'cancelled', version: 2 });
    expect(await engine.orders.account(tenant, 'a-1')).toEqual({ id: 'a-1', balanceCents: 10_000 });
    expect(await engine.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 10 });
  });
});

describe('refund guards', () => {
  it('refuses a refund that would take the balance above 10^13 cents, writing nothing', async () => {
    const tenant = await shop();
    await engine.orders.processOrder(tenant, { orderId: 'o-1', userId: 'a-1', productId: 'p-1', quantity: 1, unitPriceCents: 1000 });
    // balance 9000; fill it up to 10^13 - 500: the refund of 1000 would cross the limit
    await engine.orders.deposit(tenant, 'a-1', 10_000_000_000_000 - 9000 - 500);
    const err = await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' }), 'BAD_USER_INPUT');
    expect(err.message).toContain('refund');
  });

  it('refuses a restock by return that would take the stock above 2^31 - 1, writing nothing', async () => {
    const tenant = await shop();
    await engine.orders.processOrder(tenant, { orderId: 'o-1', userId: 'a-1', productId: 'p-1', quantity: 5, unitPriceCents: 1 });
    await engine.orders.restock(tenant, 'p-1', 2_147_483_647 - 5 - 2);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' }), 'BAD_USER_INPUT');
  });
});

describe('monotonic updatedAt', () => {
  it('never moves updatedAt (and history, and the listing position) backwards when the clock does', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    // as after a failover to a Redis whose clock is an hour behind: the stored time is in the future
    const stored = await redis.hgetall(k.workflow('w-1'));
    const future = Number(stored.updatedAt) + 3_600_000;
    const member = (t: number) => `${String(9_999_999_999_999 - t).padStart(13, '0')}:w-1:doc`;
    for (const index of [k.indexAll(), k.indexMachine('doc')]) {
      await redis.zrem(index, member(Number(stored.updatedAt)));
      await redis.zadd(index, 0, member(future));
    }
    for (const index of [k.indexAllByState(), k.indexMachineByState('doc')]) {
      await redis.zrem(index, `draft:${member(Number(stored.updatedAt))}`);
      await redis.zadd(index, 0, `draft:${member(future)}`);
    }
    await redis.hset(k.workflow('w-1'), 'updatedAt', String(future));

    const moved = await engine.workflows.transition(tenant, { id: 'w-1', to: 'review' });
    expect(moved.updatedAt.getTime()).toBe(future);
    const history = await engine.workflows.history(tenant, 'w-1', {});
    expect(history.items.map((e) => e.at.getTime())).toEqual([Number(stored.createdAt), future]);
    expect(await redis.zrange(k.indexAll(), 0, -1)).toEqual([member(future)]);
    expect(await redis.zrange(k.indexMachineByState('doc'), 0, -1)).toEqual([`review:${member(future)}`]);
  });
});

describe('sched_apply workflow check', () => {
  it("refuses an entry with another workflow's id and key block in ARGV and KEYS, moving nothing", async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    await engine.workflows.start(tenant, { id: 'w-a', machine: 'doc' });
    await engine.workflows.start(tenant, { id: 'w-b', machine: 'doc' });
    await engine.scheduler.schedule(tenant, { id: 's-a', workflowId: 'w-a', to: 'review', runAt: new Date(Date.now() - 1000) });
    const before = await snapshotTenant(redis, tenant);
    await expect(
      redis.call('FCALL', 'atomflow_sched_apply', 12, ...k.scheduleKeys('s-a'), ...k.workflowBlock('w-b', 'doc'),
        ...engine.context.eventArgs(k), 's-a', 'w-b', 'doc', '', '', 5, 60_000),
    ).rejects.toThrow(/^STALE_KEYS /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });
});
