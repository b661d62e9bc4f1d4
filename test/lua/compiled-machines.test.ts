/**
 * Machines are kept compiled beside their JSON (lua/include/workflow.lua): starting, moving and
 * reading a workflow decode no JSON. A machine stored by an atomflow before those fields (only
 * 'current' and 'v<N>'), or redefined by one (its 'current' moved on, its 'start' not), must work as
 * before, and the first write that reads it stores its compiled fields.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/app/engine.js';
import { EngineError } from '../../src/core/errors.js';
import { createTestEngine, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;

beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

/** Leaves only what an older atomflow stored: 'current' and the 'v<N>' definitions. */
async function toOldLayout(machineKey: string): Promise<void> {
  const fields = (await redis.hkeys(machineKey)).filter((f) => f !== 'current' && !/^v\d+$/.test(f));
  expect(fields.length).toBeGreaterThan(0);
  await redis.hdel(machineKey, ...fields);
}

async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (err) {
    if (err instanceof EngineError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('machines stored without compiled fields', () => {
  it('start, move and read workflows as before; the writes store the compiled fields', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await engine.workflows.defineMachine(tenant, documentMachine());
    const compiled = await redis.hgetall(k.machine('doc'));
    expect(compiled).toMatchObject({ name: 'doc', start: '1 draft -["review"]', 's1:archived': 'T[]', 's1:review': '-["draft","published"]' });

    await toOldLayout(k.machine('doc'));
    const wf = await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    expect(wf).toMatchObject({ state: 'draft', machineVersion: 1, allowedTransitions: ['review'] });
    expect(await redis.hgetall(k.machine('doc'))).toEqual(compiled);

    await toOldLayout(k.machine('doc'));
    expect((await engine.workflows.get(tenant, 'w-1'))?.allowedTransitions).toEqual(['review']);
    expect(await codeOf(engine.workflows.transition(tenant, { id: 'w-1', to: 'archived' }))).toBe('INVALID_TRANSITION');
    expect(await codeOf(engine.workflows.transition(tenant, { id: 'w-1', to: 'nowhere' }))).toBe('INVALID_TRANSITION');
    expect(await redis.hlen(k.machine('doc'))).toBe(2);
    const moved = await engine.workflows.transition(tenant, { id: 'w-1', to: 'review' });
    expect(moved).toMatchObject({ state: 'review', version: 2, allowedTransitions: ['draft', 'published'] });
    // a transition stores the fields of its workflow's version (not 'start': that version need not be the current one)
    const { start: _start, ...versionFields } = compiled;
    expect(await redis.hgetall(k.machine('doc'))).toEqual({ current: '1', v1: compiled.v1, ...versionFields });
  });

  it('start in the current version when an older atomflow moved current on without start', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await engine.workflows.defineMachine(tenant, documentMachine());
    const v2 = { ...documentMachine(), version: 2, initialState: 'review', transitions: [{ from: 'review', to: ['published'] }], terminalStates: ['draft', 'published', 'archived'] };
    await redis.hset(k.machine('doc'), 'current', '2', 'v2', JSON.stringify(v2));
    const wf = await engine.workflows.start(tenant, { id: 'w-2', machine: 'doc' });
    expect(wf).toMatchObject({ state: 'review', machineVersion: 2, allowedTransitions: ['published'] });
    expect(await redis.hget(k.machine('doc'), 'start')).toBe('2 review -["published"]');
    expect((await engine.workflows.transition(tenant, { id: 'w-2', to: 'published' })).allowedTransitions).toEqual([]);
  });

  it('take orders, and refund a cancelled one, with the order machine of an older atomflow', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await engine.workflows.ensureOrderMachine(tenant);
    await toOldLayout(k.machine('order'));
    await engine.orders.restock(tenant, 'p-1', 5);
    await engine.orders.deposit(tenant, 'a-1', 1_000);
    const order = await engine.orders.processOrder(tenant, { orderId: 'o-1', userId: 'a-1', productId: 'p-1', quantity: 2, unitPriceCents: 100 });
    expect(order.workflow).toMatchObject({ state: 'pending', allowedTransitions: ['processing', 'cancelled'] });
    expect(await redis.hget(k.machine('order'), 'start')).toBe('1 pending -["processing","cancelled"]');

    await toOldLayout(k.machine('order'));
    const cancelled = await engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' });
    expect(cancelled).toMatchObject({ state: 'cancelled', allowedTransitions: [] });
    expect(await engine.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 5 });
    expect(await engine.orders.account(tenant, 'a-1')).toEqual({ id: 'a-1', balanceCents: 1_000 });
    expect(await redis.hget(k.machine('order'), 's1:cancelled')).toBe('T[]');
  });
});
