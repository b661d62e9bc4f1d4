/**
 * Identity: every function that receives an id and the keys of that id checks they belong together
 * (the id stored in the key) before any write. Called directly with another id's keys, each answers
 * STALE_KEYS and writes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/engine/engine.js';
import { createTestEngine, snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

/** Runs a raw FCALL, expects STALE_KEYS, and that nothing of the tenant changed. */
async function expectStale(tenant: string, name: string, keys: string[], args: (string | number)[]): Promise<void> {
  const before = await snapshotTenant(redis, tenant);
  await expect(redis.call('FCALL', `atomflow_${name}`, keys.length, ...keys, ...args)).rejects.toThrow(/^STALE_KEYS /);
  expect(await snapshotTenant(redis, tenant)).toEqual(before);
}

/** Two workflows of `doc` (w-a, w-b), a second machine `doc2` with the same states, and a shop. */
async function world(): Promise<string> {
  const tenant = uniqueTenant('ident');
  await engine.workflows.defineMachine(tenant, documentMachine('doc'));
  await engine.workflows.defineMachine(tenant, documentMachine('doc2'));
  await engine.workflows.start(tenant, { id: 'w-a', machine: 'doc' });
  await engine.workflows.start(tenant, { id: 'w-b', machine: 'doc' });
  await engine.orders.restock(tenant, 'p-1', 10);
  await engine.orders.restock(tenant, 'p-2', 10);
  await engine.orders.deposit(tenant, 'a-1', 10_000);
  await engine.orders.deposit(tenant, 'a-2', 10_000);
  await engine.orders.processOrder(tenant, { orderId: 'o-1', userId: 'a-1', productId: 'p-1', quantity: 1, unitPriceCents: 100 });
  return tenant;
}

const transitionArgs = (tenant: string, id: string, machine: string, to: string, userId = '', productId = '') => [
  ...engine.context.eventArgs(engine.context.keys(tenant)), id, machine, userId, productId, to, '', '', '[]',
];

describe('workflow functions', () => {
  it("wf_transition with workflow A's key block and workflow B's id moves nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    await expectStale(tenant, 'wf_transition', k.workflowBlock('w-a', 'doc'), transitionArgs(tenant, 'w-b', 'doc', 'review'));
  });

  it("wf_transition with another workflow's history key moves nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    const block = k.workflowBlock('w-a', 'doc');
    block[1] = k.workflowHistory('w-b'); // same length as w-a's
    await expectStale(tenant, 'wf_transition', block, transitionArgs(tenant, 'w-a', 'doc', 'review'));
  });

  it("wf_transition with another machine's hash moves nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    const block = k.workflowBlock('w-a', 'doc');
    block[2] = k.machine('doc2');
    await expectStale(tenant, 'wf_transition', block, transitionArgs(tenant, 'w-a', 'doc', 'review'));
  });

  it("cancelling an order with another product's stock or account's balance refunds nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    const wrongProduct = k.workflowBlock('o-1', 'order', { userId: 'a-1', productId: 'p-2' });
    await expectStale(tenant, 'wf_transition', wrongProduct, transitionArgs(tenant, 'o-1', 'order', 'cancelled', 'a-1', 'p-1'));
    const wrongAccount = k.workflowBlock('o-1', 'order', { userId: 'a-2', productId: 'p-1' });
    await expectStale(tenant, 'wf_transition', wrongAccount, transitionArgs(tenant, 'o-1', 'order', 'cancelled', 'a-1', 'p-1'));
  });

  it("wf_start with an existing workflow's history key, or another machine's hash, creates nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    const args = [...engine.context.eventArgs(k), 'w-new', 'doc', '[]'];
    const history = k.workflowBlock('w-new', 'doc');
    history[1] = k.workflowHistory('w-a');
    await expectStale(tenant, 'wf_start', history, args);
    const machine = k.workflowBlock('w-new', 'doc');
    machine[2] = k.machine('doc2');
    await expectStale(tenant, 'wf_start', machine, args);
  });

  it("machine_define with another machine's hash defines nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    const { name: _name, ...definition } = documentMachine('doc');
    await expectStale(tenant, 'machine_define', [k.machine('doc'), k.machineNames()], ['doc2', JSON.stringify(definition)]);
    await expectStale(tenant, 'machine_ensure_order', [k.machine('doc'), k.machineNames()], []);
  });
});

describe('order functions', () => {
  it("product_restock and account_deposit with another id's key add nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    await expectStale(tenant, 'product_restock', [k.productStock('p-1')], ['p-2', 5]);
    await expectStale(tenant, 'account_deposit', [k.accountBalance('a-1')], ['a-2', 500]);
    await expect(redis.call('FCALL_RO', 'atomflow_product_get', 1, k.productStock('p-1'), 'p-2')).rejects.toThrow(/^STALE_KEYS /);
    await expect(redis.call('FCALL_RO', 'atomflow_account_get', 1, k.accountBalance('a-1'), 'a-2')).rejects.toThrow(/^STALE_KEYS /);
  });

  it("order_process with another product's stock, another account's balance or another order's hash charges nothing", async () => {
    const tenant = await world();
    const k = engine.context.keys(tenant);
    const args = (orderId: string) => [...engine.context.eventArgs(k), orderId, 'a-1', 'p-1', 1, 100];
    const keys = (orderId: string, userId: string, productId: string) => [
      ...k.workflowBlock(orderId, 'order', { userId, productId }), k.machineNames(),
    ];
    await expectStale(tenant, 'order_process', keys('o-2', 'a-1', 'p-2'), args('o-2'));
    await expectStale(tenant, 'order_process', keys('o-2', 'a-2', 'p-1'), args('o-2'));
    await expectStale(tenant, 'order_process', keys('o-1', 'a-1', 'p-1'), args('o-3'));
  });
});

describe('scheduler functions', () => {
  async function withEntries(): Promise<string> {
    const tenant = await world();
    const past = new Date(Date.now() - 1000);
    await engine.scheduler.schedule(tenant, { id: 's-a', workflowId: 'w-a', to: 'review', runAt: past });
    await engine.scheduler.schedule(tenant, { id: 's-b', workflowId: 'w-b', to: 'review', runAt: past });
    return tenant;
  }

  it("sched_apply with entry A's key and entry B's id applies nothing", async () => {
    const tenant = await withEntries();
    const k = engine.context.keys(tenant);
    await expectStale(tenant, 'sched_apply', [...k.scheduleKeys('s-a'), ...k.workflowBlock('w-b', 'doc')], [
      ...engine.context.eventArgs(k), 's-b', 'w-b', 'doc', '', '', 5, 60_000,
    ]);
    // entry and workflow right, but another workflow's block
    await expectStale(tenant, 'sched_apply', [...k.scheduleKeys('s-a'), ...k.workflowBlock('w-b', 'doc')], [
      ...engine.context.eventArgs(k), 's-a', 'w-a', 'doc', '', '', 5, 60_000,
    ]);
  });

  it("sched_cancel with entry A's key and entry B's id cancels nothing", async () => {
    const tenant = await withEntries();
    const k = engine.context.keys(tenant);
    await expectStale(tenant, 'sched_cancel', k.scheduleKeys('s-a'), ['s-b', 60_000]);
    await expectStale(tenant, 'sched_attempt_failed', k.scheduleKeys('s-a'), ['s-b', 'ERR boom', 5, 60_000]);
  });

  it("sched_create with workflow A's hash or machine B's hash, or an existing entry's key, schedules nothing", async () => {
    const tenant = await withEntries();
    const k = engine.context.keys(tenant);
    const args = (entryId: string, workflowId: string) => [entryId, workflowId, 'doc', 'review', Date.now() + 60_000, '[]'];
    await expectStale(tenant, 'sched_create', [...k.scheduleKeys('s-new'), k.workflow('w-a'), k.machine('doc')], args('s-new', 'w-b'));
    await expectStale(tenant, 'sched_create', [...k.scheduleKeys('s-new'), k.workflow('w-a'), k.machine('doc2')], args('s-new', 'w-a'));
    await expectStale(tenant, 'sched_create', [...k.scheduleKeys('s-a'), k.workflow('w-a'), k.machine('doc')], args('s-new', 'w-a'));
  });
});
