/**
 * RETENTION_TERMINAL: a workflow that reaches a terminal state leaves the listings (an order also its
 * account's orders) and expires, in the call that moves it there. Default off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Engine } from '../../src/engine/engine.js';
import { createTestEngine, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
let retiring: Engine;
beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
  retiring = new Engine(redis, { retentionTerminalMs: 300 });
});
afterAll(() => redis.disconnect());

async function listed(e: Engine, tenant: string): Promise<string[][]> {
  const ids = async (filter: { machine?: string; state?: string }) => (await e.workflows.list(tenant, filter)).items.map((w) => w.id).sort();
  return [await ids({}), await ids({ machine: 'doc' }), await ids({ state: 'archived' }), await ids({ machine: 'doc', state: 'archived' })];
}

async function toArchived(e: Engine, tenant: string, id: string): Promise<void> {
  for (const to of ['review', 'published', 'archived']) await e.workflows.transition(tenant, { id, to });
}

describe('terminal workflows', () => {
  it('are kept and listed by default', async () => {
    const tenant = uniqueTenant('ret');
    await engine.workflows.defineMachine(tenant, documentMachine());
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await toArchived(engine, tenant, 'w-1');
    expect(await listed(engine, tenant)).toEqual([['w-1'], ['w-1'], ['w-1'], ['w-1']]);
    expect(await redis.pttl(engine.context.keys(tenant).workflow('w-1'))).toBe(-1);
  });

  it('leave all four listings and expire after RETENTION_TERMINAL, in the transition that ends them', async () => {
    const tenant = uniqueTenant('ret');
    const k = retiring.context.keys(tenant);
    await retiring.workflows.defineMachine(tenant, documentMachine());
    await retiring.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await retiring.workflows.start(tenant, { id: 'w-2', machine: 'doc' });
    await toArchived(retiring, tenant, 'w-1');
    expect(await listed(retiring, tenant)).toEqual([['w-2'], ['w-2'], [], []]);
    for (const key of [k.workflow('w-1'), k.workflowHistory('w-1')]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(300);
    }
    expect(await redis.pttl(k.workflow('w-2'))).toBe(-1);
    expect((await retiring.workflows.get(tenant, 'w-1'))?.state).toBe('archived');
    await expect.poll(() => redis.exists(k.workflow('w-1'), k.workflowHistory('w-1')), { interval: 25 }).toBe(0);
    expect(await retiring.workflows.get(tenant, 'w-1')).toBeNull();
  });

  it('applies to a workflow created in a terminal state and to a scheduled transition into one', async () => {
    const tenant = uniqueTenant('ret');
    const k = retiring.context.keys(tenant);
    await retiring.workflows.defineMachine(tenant, { name: 'once', initialState: 'done', states: ['done'], transitions: [] });
    await retiring.workflows.start(tenant, { id: 'w-once', machine: 'once' });
    expect((await retiring.workflows.list(tenant, {})).items).toEqual([]);
    expect(await redis.pttl(k.workflow('w-once'))).toBeGreaterThan(0);

    await retiring.workflows.defineMachine(tenant, documentMachine());
    await retiring.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await retiring.workflows.transition(tenant, { id: 'w-1', to: 'review' });
    await retiring.workflows.transition(tenant, { id: 'w-1', to: 'published' });
    await retiring.scheduler.schedule(tenant, { id: 's-1', workflowId: 'w-1', to: 'archived', runAt: new Date(Date.now() - 1000) });
    expect((await retiring.scheduler.apply(tenant, 's-1')).status).toBe('DONE');
    expect((await retiring.workflows.list(tenant, { machine: 'doc' })).items).toEqual([]);
    expect(await redis.pttl(k.workflow('w-1'))).toBeGreaterThan(0);
  });

  it("take a cancelled order out of its account's orders, refunding it in the same call", async () => {
    const tenant = uniqueTenant('ret');
    const k = retiring.context.keys(tenant);
    await retiring.orders.restock(tenant, 'p-1', 10);
    await retiring.orders.deposit(tenant, 'a-1', 1000);
    const order = (orderId: string) => retiring.orders.processOrder(tenant, { orderId, userId: 'a-1', productId: 'p-1', quantity: 2, unitPriceCents: 100 });
    await order('o-1');
    await order('o-2');
    await retiring.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' });
    expect((await retiring.orders.accountOrders(tenant, 'a-1')).items.map((o) => o.id)).toEqual(['o-2']);
    expect(await redis.zcard(k.accountOrders('a-1'))).toBe(1);
    expect(await retiring.orders.account(tenant, 'a-1')).toEqual({ id: 'a-1', balanceCents: 800 });
    expect(await retiring.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 8 });
    expect(await redis.pttl(k.workflow('o-1'))).toBeGreaterThan(0);
    expect(await redis.pttl(k.workflow('o-2'))).toBe(-1);
  });
});
