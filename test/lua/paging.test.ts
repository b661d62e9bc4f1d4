/**
 * Every paged list uses a keyset cursor: a page continues after the last item the client saw, so
 * items added between pages are neither repeated nor make a page skip one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/engine/engine.js';
import type { Page } from '../../src/workflows/workflows.engine.js';
import { createTestEngine, expectRejectedWithoutWrites, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;
beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

/** Reads every page of a listing, running `between` after the first page. */
async function readAll<T>(read: (after: string | null) => Promise<Page<T>>, between: () => Promise<void>): Promise<T[]> {
  const items: T[] = [];
  let after: string | null = null;
  let first = true;
  do {
    const page: Page<T> = await read(after);
    items.push(...page.items);
    after = page.nextCursor;
    if (first) await between();
    first = false;
  } while (after !== null);
  return items;
}

describe('Account.orders', () => {
  it('pages newest first without repeating or skipping an order when orders are placed between pages', async () => {
    const tenant = uniqueTenant('page');
    await engine.orders.restock(tenant, 'p-1', 100);
    await engine.orders.deposit(tenant, 'a-1', 100_000);
    const order = (orderId: string) => engine.orders.processOrder(tenant, { orderId, userId: 'a-1', productId: 'p-1', quantity: 1, unitPriceCents: 10 });
    const placed = [];
    for (let i = 0; i < 7; i++) placed.push(await order(`o-${i}`));
    const expected = placed.map((o) => o.id).reverse();
    const seen = await readAll(
      (after) => engine.orders.accountOrders(tenant, 'a-1', { first: 2, after }),
      async () => {
        await order('o-new-1');
        await order('o-new-2');
      },
    );
    expect(seen.map((o) => o.id)).toEqual(expected);
    // a fresh read starts with the new orders
    const fresh = await engine.orders.accountOrders(tenant, 'a-1', { first: 2 });
    expect(fresh.items.map((o) => o.id)).toEqual(['o-new-2', 'o-new-1']);
  });

  it('rejects a cursor of another listing, writing nothing', async () => {
    const tenant = uniqueTenant('page');
    await engine.orders.deposit(tenant, 'a-1', 1);
    await engine.workflows.defineMachine(tenant, documentMachine());
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await engine.workflows.start(tenant, { id: 'w-2', machine: 'doc' });
    const wfCursor = (await engine.workflows.list(tenant, { first: 1, state: 'draft' })).nextCursor;
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.accountOrders(tenant, 'a-1', { after: wfCursor }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.accountOrders(tenant, 'a-1', { after: 'MTA' }), 'BAD_USER_INPUT');
    const k = engine.context.keys(tenant);
    await expect(redis.call('FCALL_RO', 'atomflow_account_orders', 1, k.accountOrders('a-1'), '10', '5')).rejects.toThrow(/^BAD_USER_INPUT /);
  });
});

describe('workflow history', () => {
  it('pages oldest first; transitions made between pages come at the end, none repeated', async () => {
    const tenant = uniqueTenant('page');
    await engine.workflows.defineMachine(tenant, {
      name: 'ping', initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }, { from: 'b', to: ['a'] }],
    });
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'ping' });
    for (let i = 0; i < 4; i++) await engine.workflows.transition(tenant, { id: 'w-1', to: i % 2 === 0 ? 'b' : 'a' });
    const seen = await readAll(
      (after) => engine.workflows.history(tenant, 'w-1', { first: 2, after }),
      async () => {
        await engine.workflows.transition(tenant, { id: 'w-1', to: 'b' });
      },
    );
    expect(seen.map((e) => e.version)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe('workflows listing', () => {
  it('pages most recently updated first; workflows started between pages are not repeated and skip nothing', async () => {
    const tenant = uniqueTenant('page');
    await engine.workflows.defineMachine(tenant, documentMachine());
    const started = [];
    for (let i = 0; i < 6; i++) started.push(await engine.workflows.start(tenant, { id: `w-${i}`, machine: 'doc' }));
    const expected = [...started]
      .sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || (a.id < b.id ? -1 : 1))
      .map((w) => w.id);
    const seen = await readAll(
      (after) => engine.workflows.list(tenant, { machine: 'doc', first: 2, after }),
      async () => {
        await engine.workflows.start(tenant, { id: 'w-new', machine: 'doc' });
      },
    );
    // w-new goes before the first page, or (started in the same millisecond as the cursor's item,
    // ties ordered by id) on a later one: either way no workflow is repeated or skipped
    const ids = seen.map((w) => w.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => id !== 'w-new')).toEqual(expected);
  });
});

describe('page sizes and cursors', () => {
  it('refuses page sizes outside 1..100 in the engine, although Lua would serve up to 1000', async () => {
    const tenant = uniqueTenant('page');
    await engine.workflows.defineMachine(tenant, documentMachine());
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    for (const first of [0, 101, 1000]) {
      await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.list(tenant, { first }), 'BAD_USER_INPUT');
      await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.history(tenant, 'w-1', { first }), 'BAD_USER_INPUT');
      await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.accountOrders(tenant, 'a-1', { first }), 'BAD_USER_INPUT');
      await expectRejectedWithoutWrites(redis, tenant, () => engine.scheduler.list(tenant, { first }), 'BAD_USER_INPUT');
    }
    expect((await engine.workflows.list(tenant, { first: 100 })).items).toHaveLength(1);
  });

  it('wf_list refuses, in Lua, a cursor of another state or a malformed one', async () => {
    const tenant = uniqueTenant('page');
    await engine.workflows.defineMachine(tenant, documentMachine());
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await engine.workflows.start(tenant, { id: 'w-2', machine: 'doc' });
    const k = engine.context.keys(tenant);
    const member = (await redis.zrange(k.indexAllByState(), 0, 0))[0]!;
    expect(member).toMatch(/^draft:/);
    const list = (state: string, cursor: string) => redis.call('FCALL_RO', 'atomflow_wf_list', 1, k.indexAllByState(), state, '10', cursor);
    expect(JSON.parse((await list('draft', member)) as string).items).toHaveLength(1);
    await expect(list('review', member)).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(list('draft', 'draft:123:w-1:doc')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(list('', member)).rejects.toThrow(/^BAD_USER_INPUT /);
  });
});
