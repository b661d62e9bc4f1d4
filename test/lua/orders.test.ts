import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Engine } from '../../src/app/engine.js';
import type { Order } from '../../src/orders/orders.engine.js';
import { connectTestRedis, createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';

let redis: Redis;
let engine: Engine;

beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

const MAX_INT32 = 2_147_483_647;
const MAX_MONEY = 10_000_000_000_000;

const doc = {
  name: 'doc',
  initialState: 'draft',
  states: ['draft', 'done'],
  transitions: [{ from: 'draft', to: ['done'] }],
};

/** Collects every message published on `channel` (parsed as JSON). */
async function listen(channel: string): Promise<{ messages: Record<string, unknown>[]; close: () => void }> {
  const sub = redis.duplicate();
  const messages: Record<string, unknown>[] = [];
  sub.on('message', (_channel: string, message: string) => messages.push(JSON.parse(message) as Record<string, unknown>));
  await sub.subscribe(channel);
  return { messages, close: () => sub.disconnect() };
}

async function streamEvents(tenant: string): Promise<{ id: string; type: string; data: Record<string, unknown> }[]> {
  const entries = await redis.xrange(engine.context.keys(tenant).events(), '-', '+');
  return entries.map(([id, fields]) => {
    const map = new Map<string, string>();
    for (let i = 0; i < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
    return { id, type: map.get('type')!, data: JSON.parse(map.get('data')!) as Record<string, unknown> };
  });
}

async function stockOf(tenant: string, productId: string): Promise<number | undefined> {
  return (await engine.orders.product(tenant, productId))?.stock;
}

async function balanceOf(tenant: string, accountId: string): Promise<number | undefined> {
  return (await engine.orders.account(tenant, accountId))?.balanceCents;
}

/** A tenant with product p-1 (stock 10) and account a-1 (10 000 cents). */
async function shop(): Promise<string> {
  const tenant = uniqueTenant('ord');
  await engine.orders.restock(tenant, 'p-1', 10);
  await engine.orders.deposit(tenant, 'a-1', 10_000);
  return tenant;
}

const order1 = { orderId: 'o-1', userId: 'a-1', productId: 'p-1', quantity: 3, unitPriceCents: 250 };

describe('inventory and balances', () => {
  it('restocks products and funds accounts, reading null before the first write', async () => {
    const tenant = uniqueTenant('ord');
    expect(await engine.orders.product(tenant, 'p-1')).toBeNull();
    expect(await engine.orders.account(tenant, 'a-1')).toBeNull();
    expect(await engine.orders.restock(tenant, 'p-1', 5)).toEqual({ id: 'p-1', stock: 5 });
    expect(await engine.orders.restock(tenant, 'p-1', 3)).toEqual({ id: 'p-1', stock: 8 });
    expect(await engine.orders.product(tenant, 'p-1')).toEqual({ id: 'p-1', stock: 8 });
    expect(await engine.orders.deposit(tenant, 'a-1', 1_000)).toEqual({ id: 'a-1', balanceCents: 1_000 });
    expect(await engine.orders.deposit(tenant, 'a-1', 234)).toEqual({ id: 'a-1', balanceCents: 1_234 });
    expect(await engine.orders.account(tenant, 'a-1')).toEqual({ id: 'a-1', balanceCents: 1_234 });
    expect(await engine.orders.product(tenant, 'p-2')).toBeNull();
  });

  it('accepts the upper bounds exactly and rejects going past them without writing', async () => {
    const tenant = uniqueTenant('ord');
    expect(await engine.orders.restock(tenant, 'p-max', MAX_INT32)).toEqual({ id: 'p-max', stock: MAX_INT32 });
    expect(await engine.orders.deposit(tenant, 'a-max', MAX_MONEY)).toEqual({ id: 'a-max', balanceCents: MAX_MONEY });
    // the resulting amount is only known inside Redis: the Lua function refuses it
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.restock(tenant, 'p-max', 1), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.deposit(tenant, 'a-max', 1), 'BAD_USER_INPUT');
    await engine.orders.restock(tenant, 'p-2', MAX_INT32 - 5);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.restock(tenant, 'p-2', 6), 'BAD_USER_INPUT');
    expect(await engine.orders.restock(tenant, 'p-2', 5)).toEqual({ id: 'p-2', stock: MAX_INT32 });
    await engine.orders.deposit(tenant, 'a-2', MAX_MONEY - 10);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.deposit(tenant, 'a-2', 11), 'BAD_USER_INPUT');
    expect(await engine.orders.deposit(tenant, 'a-2', 10)).toEqual({ id: 'a-2', balanceCents: MAX_MONEY });
  });

  it.each([0, -1, 1.5, Number.NaN, MAX_INT32 + 1])('rejects restocking %s units without writing', async (quantity) => {
    const tenant = uniqueTenant('ord');
    await engine.orders.restock(tenant, 'p-1', 1);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.restock(tenant, 'p-1', quantity), 'BAD_USER_INPUT');
  });

  it.each([0, -100, 0.5, MAX_MONEY + 1])('rejects depositing %s cents without writing', async (amount) => {
    const tenant = uniqueTenant('ord');
    await engine.orders.deposit(tenant, 'a-1', 1);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.deposit(tenant, 'a-1', amount), 'BAD_USER_INPUT');
  });

  it('rejects bad product and account ids without writing', async () => {
    const tenant = uniqueTenant('ord');
    for (const id of ['a{b', 'a}b', 'a:b', '', '-x', 'x'.repeat(129)]) {
      await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.restock(tenant, id, 1), 'BAD_USER_INPUT');
      await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.deposit(tenant, id, 1), 'BAD_USER_INPUT');
      await expect(engine.orders.product(tenant, id)).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
      await expect(engine.orders.account(tenant, id)).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    }
  });

  it('rejects bad amounts and ids in Lua too, when the typed layer is bypassed', async () => {
    const tenant = uniqueTenant('ord');
    await engine.orders.restock(tenant, 'p-1', 1);
    await engine.orders.deposit(tenant, 'a-1', 1);
    const k = engine.context.keys(tenant);
    const stock = k.productStock('p-1');
    const balance = k.accountBalance('a-1');
    const before = await snapshotTenant(redis, tenant);
    for (const bad of ['0', '-1', '1.5', 'ten', '', '2147483648']) {
      await expect(redis.call('FCALL', 'atomflow_product_restock', 1, stock, 'p-1', bad)).rejects.toThrow(/^BAD_USER_INPUT /);
    }
    for (const bad of ['0', '-1', '1.5', '', '10000000000001']) {
      await expect(redis.call('FCALL', 'atomflow_account_deposit', 1, balance, 'a-1', bad)).rejects.toThrow(/^BAD_USER_INPUT /);
    }
    await expect(redis.call('FCALL', 'atomflow_product_restock', 1, stock, 'p{1}', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(redis.call('FCALL', 'atomflow_account_deposit', 1, balance, 'a:1', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });
});

describe('processOrder', () => {
  it('deducts stock and balance, creates a pending order workflow and announces it', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    const orders = await listen(k.ordersChannel());
    const workflows = await listen(k.workflowChannel());

    const order = await engine.orders.processOrder(tenant, order1);
    expect(order).toMatchObject({
      id: 'o-1',
      userId: 'a-1',
      productId: 'p-1',
      quantity: 3,
      unitPriceCents: 250,
      totalCents: 750,
      state: 'pending',
    });
    expect(order.createdAt).toBeInstanceOf(Date);
    expect(order.workflow).toMatchObject({
      id: 'o-1',
      machine: 'order',
      kind: 'order',
      state: 'pending',
      version: 1,
      allowedTransitions: ['processing', 'cancelled'],
      metadata: {},
    });
    expect(await stockOf(tenant, 'p-1')).toBe(7);
    expect(await balanceOf(tenant, 'a-1')).toBe(9_250);
    expect(await engine.orders.order(tenant, 'o-1')).toEqual(order);
    expect((await engine.workflows.get(tenant, 'o-1'))?.order).toEqual({
      userId: 'a-1',
      productId: 'p-1',
      quantity: 3,
      unitPriceCents: 250,
      totalCents: 750,
    });
    expect((await engine.workflows.history(tenant, 'o-1', {})).items.map((e) => [e.from, e.to])).toEqual([[null, 'pending']]);
    // the built-in machine was created on the way
    expect((await engine.workflows.machines(tenant)).map((m) => m.name)).toEqual(['order']);

    const events = await streamEvents(tenant);
    expect(events.map((e) => e.type)).toEqual(['WORKFLOW_TRANSITION', 'ORDER_CONFIRMED']);
    expect(events[0]!.data).toMatchObject({ workflowId: 'o-1', machine: 'order', from: null, to: 'pending', version: 1 });
    expect(events[1]!.data).toEqual({
      type: 'ORDER_CONFIRMED',
      orderId: 'o-1',
      userId: 'a-1',
      state: 'pending',
      totalCents: 750,
      at: order.createdAt.getTime(),
    });
    await expect.poll(() => orders.messages.length).toBe(1);
    expect(orders.messages[0]).toEqual({ eventId: events[1]!.id, ...events[1]!.data });
    await expect.poll(() => workflows.messages.length).toBe(1);
    expect(workflows.messages[0]).toMatchObject({ eventId: events[0]!.id, type: 'WORKFLOW_TRANSITION', workflowId: 'o-1', to: 'pending' });
    orders.close();
    workflows.close();
  });

  it('accepts a free order (unit price 0) and an order that spends the whole balance and stock', async () => {
    const tenant = await shop();
    const free = await engine.orders.processOrder(tenant, { ...order1, orderId: 'free', unitPriceCents: 0, quantity: 1 });
    expect(free.totalCents).toBe(0);
    const all = await engine.orders.processOrder(tenant, { ...order1, orderId: 'all', quantity: 9, unitPriceCents: 1_111 });
    expect(all.totalCents).toBe(9_999);
    expect(await stockOf(tenant, 'p-1')).toBe(0);
    expect(await balanceOf(tenant, 'a-1')).toBe(1);
  });

  it("lists an account's orders newest first, paged", async () => {
    const tenant = await shop();
    await engine.orders.deposit(tenant, 'a-2', 1_000);
    for (const n of [1, 2, 3, 4, 5]) {
      await engine.orders.processOrder(tenant, { ...order1, orderId: `o-${n}`, quantity: 1, unitPriceCents: n * 10 });
    }
    await engine.orders.processOrder(tenant, { ...order1, orderId: 'other', userId: 'a-2', quantity: 1 });

    const all = await engine.orders.accountOrders(tenant, 'a-1');
    expect(all.items.map((o) => o.id)).toEqual(['o-5', 'o-4', 'o-3', 'o-2', 'o-1']);
    expect(all.items.map((o) => o.totalCents)).toEqual([50, 40, 30, 20, 10]);
    expect(all.nextCursor).toBeNull();

    const ids: string[][] = [];
    let after: string | null = null;
    do {
      const page: Awaited<ReturnType<typeof engine.orders.accountOrders>> = await engine.orders.accountOrders(tenant, 'a-1', { first: 2, after });
      ids.push(page.items.map((o) => o.id));
      after = page.nextCursor;
    } while (after);
    expect(ids).toEqual([['o-5', 'o-4'], ['o-3', 'o-2'], ['o-1']]);

    expect((await engine.orders.accountOrders(tenant, 'a-2')).items.map((o) => o.id)).toEqual(['other']);
    expect(await engine.orders.accountOrders(tenant, 'nobody')).toEqual({ items: [], nextCursor: null });
    await expect(engine.orders.accountOrders(tenant, 'a-1', { first: 0 })).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    await expect(engine.orders.accountOrders(tenant, 'a-1', { after: '!!' })).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    await expect(engine.orders.accountOrders(tenant, 'a:1')).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
  });

  it('answers null for an unknown order and for a workflow that is not an order', async () => {
    const tenant = await shop();
    await engine.workflows.defineMachine(tenant, doc);
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    expect(await engine.orders.order(tenant, 'ghost')).toBeNull();
    expect(await engine.orders.order(tenant, 'w-1')).toBeNull();
    await expect(engine.orders.order(tenant, 'a{b}')).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
  });

  it('rejects an unknown product or account, and refused orders create nothing (not even the machine)', async () => {
    const tenant = await shop();
    const product = await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.orders.processOrder(tenant, { ...order1, productId: 'p-ghost' }),
      'NOT_FOUND',
    );
    expect(product.message).toBe('product p-ghost not found');
    const account = await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.orders.processOrder(tenant, { ...order1, userId: 'a-ghost' }),
      'NOT_FOUND',
    );
    expect(account.message).toBe('account a-ghost not found');
    expect(await engine.workflows.machine(tenant, 'order')).toBeNull();
  });

  it('rejects an order larger than the stock with OUT_OF_STOCK', async () => {
    const tenant = await shop();
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.processOrder(tenant, { ...order1, quantity: 11, unitPriceCents: 1 }), 'OUT_OF_STOCK');
    await engine.orders.processOrder(tenant, { ...order1, quantity: 10, unitPriceCents: 1 });
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.orders.processOrder(tenant, { ...order1, orderId: 'o-2', quantity: 1, unitPriceCents: 1 }),
      'OUT_OF_STOCK',
    );
  });

  it('rejects an order costing more than the balance with INSUFFICIENT_FUNDS', async () => {
    const tenant = await shop();
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.orders.processOrder(tenant, { ...order1, quantity: 2, unitPriceCents: 5_001 }),
      'INSUFFICIENT_FUNDS',
    );
    // out of stock is checked before the balance
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.orders.processOrder(tenant, { ...order1, quantity: 11, unitPriceCents: 5_001 }),
      'OUT_OF_STOCK',
    );
  });

  it('rejects an order id used by a workflow that is not an order with ALREADY_EXISTS', async () => {
    const tenant = await shop();
    await engine.workflows.defineMachine(tenant, doc);
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.processOrder(tenant, { ...order1, orderId: 'w-1' }), 'ALREADY_EXISTS');
  });

  it('rejects the same order id with other parameters with IDEMPOTENCY_CONFLICT', async () => {
    const tenant = await shop();
    await engine.orders.deposit(tenant, 'a-2', 10_000);
    await engine.orders.restock(tenant, 'p-2', 10);
    await engine.orders.processOrder(tenant, order1);
    for (const changed of [{ quantity: 2 }, { unitPriceCents: 251 }, { userId: 'a-2' }, { productId: 'p-2' }]) {
      await expectRejectedWithoutWrites(
        redis,
        tenant,
        () => engine.orders.processOrder(tenant, { ...order1, ...changed }),
        'IDEMPOTENCY_CONFLICT',
      );
    }
  });

  it.each([
    ['zero quantity', { quantity: 0 }],
    ['negative quantity', { quantity: -1 }],
    ['non-integer quantity', { quantity: 1.5 }],
    ['quantity above 2^31-1', { quantity: MAX_INT32 + 1 }],
    ['negative unit price', { unitPriceCents: -1 }],
    ['non-integer unit price', { unitPriceCents: 2.5 }],
    ['unit price above 10^13', { unitPriceCents: MAX_MONEY + 1 }],
    ['a total above 10^13', { quantity: 2, unitPriceCents: MAX_MONEY / 2 + 1 }],
    ['an order id with {', { orderId: 'o{1' }],
    ['an order id with }', { orderId: 'o}1' }],
    ['an order id with :', { orderId: 'o:1' }],
    ['an empty order id', { orderId: '' }],
    ['a user id with {', { userId: '{a-1}' }],
    ['a user id with :', { userId: 'a:1' }],
    ['a product id with }', { productId: 'p-1}' }],
    ['a product id with :', { productId: 'p:1' }],
  ])('rejects %s with BAD_USER_INPUT without writing', async (_label, change) => {
    const tenant = await shop();
    await expectRejectedWithoutWrites(redis, tenant, () => engine.orders.processOrder(tenant, { ...order1, ...change }), 'BAD_USER_INPUT');
  });

  it('rejects bad input in Lua too: order_process called directly writes nothing', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    const keys = [...k.workflowBlock('o-1', 'order', { userId: 'a-1', productId: 'p-1' }), k.machineNames()];
    const args = engine.context.eventArgs(k);
    const call = (orderId: string, quantity: string, price: string, userId = 'a-1', productId = 'p-1') =>
      redis.call('FCALL', 'atomflow_order_process', keys.length, ...keys, ...args, orderId, userId, productId, quantity, price);
    const before = await snapshotTenant(redis, tenant);
    await expect(call('o{1}', '1', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o:1', '1', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '1', '1', 'a{1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '1', '1', 'a-1', 'p:1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '0', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '-2', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '1.5', '1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '1', '-1')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(call('o-1', '2', '5000000000001')).rejects.toThrow(/^BAD_USER_INPUT /);
    // too few keys: the function cannot know where to write
    await expect(
      redis.call('FCALL', 'atomflow_order_process', 10, ...keys.slice(0, 10), ...args, 'o-1', 'a-1', 'p-1', '1', '1'),
    ).rejects.toThrow(/^BAD_USER_INPUT /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    // the same call with good arguments works
    expect(JSON.parse((await call('o-1', '1', '1')) as string)).toMatchObject({ id: 'o-1', kind: 'order', state: 'pending' });
  });

  it('replays the same order idempotently without charging again', async () => {
    const tenant = await shop();
    const first = await engine.orders.processOrder(tenant, order1);
    const before = await snapshotTenant(redis, tenant);
    const again = await engine.orders.processOrder(tenant, order1);
    expect(again).toEqual(first);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    expect(await stockOf(tenant, 'p-1')).toBe(7);
    expect(await balanceOf(tenant, 'a-1')).toBe(9_250);

    // a replay answers the order as it is now, and still charges nothing
    await engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' });
    const afterCancel = await snapshotTenant(redis, tenant);
    const replay = await engine.orders.processOrder(tenant, order1);
    expect(replay.state).toBe('cancelled');
    expect(replay.workflow.allowedTransitions).toEqual([]);
    expect(await snapshotTenant(redis, tenant)).toEqual(afterCancel);
    expect(await stockOf(tenant, 'p-1')).toBe(10);
    expect(await balanceOf(tenant, 'a-1')).toBe(10_000);
    expect((await engine.orders.accountOrders(tenant, 'a-1')).items.map((o) => o.id)).toEqual(['o-1']);
  });

  it('200 concurrent orders against stock 50: exactly 50 succeed and money is conserved', async () => {
    const tenant = uniqueTenant('ord');
    const accounts = ['a-0', 'a-1', 'a-2', 'a-3'];
    const deposits = [100_000, 101_000, 102_000, 103_000];
    await engine.orders.restock(tenant, 'p-hot', 50);
    for (const [i, a] of accounts.entries()) await engine.orders.deposit(tenant, a, deposits[i]!);

    const extra = [await connectTestRedis(), await connectTestRedis()];
    const engines = [engine, ...extra.map((r) => new Engine(r))];
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        engines[i % engines.length]!.orders.processOrder(tenant, {
          orderId: `o-${i}`,
          userId: accounts[i % accounts.length]!,
          productId: 'p-hot',
          quantity: 1,
          unitPriceCents: 100 + (i % 7) * 10,
        }),
      ),
    );
    extra.forEach((r) => r.disconnect());

    const placed = results.filter((r): r is PromiseFulfilledResult<Order> => r.status === 'fulfilled').map((r) => r.value);
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(placed).toHaveLength(50);
    expect(refused).toHaveLength(150);
    expect(refused.every((r) => (r.reason as { code?: string }).code === 'OUT_OF_STOCK')).toBe(true);
    expect(await stockOf(tenant, 'p-hot')).toBe(0);

    let balances = 0;
    const listed: Order[] = [];
    for (const a of accounts) {
      balances += (await balanceOf(tenant, a))!;
      listed.push(...(await engine.orders.accountOrders(tenant, a, { first: 100 })).items);
    }
    const totals = listed.reduce((sum, o) => sum + o.totalCents, 0);
    expect(balances + totals).toBe(deposits.reduce((a, b) => a + b, 0));
    expect(listed.map((o) => o.id).sort()).toEqual(placed.map((o) => o.id).sort());
    expect((await engine.workflows.list(tenant, { machine: 'order', first: 100 })).items).toHaveLength(50);
    const confirmed = (await streamEvents(tenant)).filter((e) => e.type === 'ORDER_CONFIRMED');
    expect(confirmed).toHaveLength(50);
  });
});

describe('order transitions', () => {
  it('cancelling refunds the total and restocks exactly once', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    await engine.orders.processOrder(tenant, order1);
    const orders = await listen(k.ordersChannel());

    const cancelled = await engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' });
    expect(cancelled).toMatchObject({ state: 'cancelled', version: 2, allowedTransitions: [] });
    expect(await stockOf(tenant, 'p-1')).toBe(10);
    expect(await balanceOf(tenant, 'a-1')).toBe(10_000);
    expect((await engine.orders.order(tenant, 'o-1'))?.state).toBe('cancelled');
    await expect.poll(() => orders.messages.length).toBe(1);
    expect(orders.messages[0]).toMatchObject({ type: 'ORDER_CANCELLED', orderId: 'o-1', userId: 'a-1', state: 'cancelled', totalCents: 750 });

    const again = await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' }),
      'INVALID_TRANSITION',
    );
    expect(again.message).toBe('cannot move workflow o-1 from cancelled to cancelled');
    expect(await stockOf(tenant, 'p-1')).toBe(10);
    expect(await balanceOf(tenant, 'a-1')).toBe(10_000);
    orders.close();
  });

  it('cancelling from processing refunds as well', async () => {
    const tenant = await shop();
    await engine.orders.processOrder(tenant, order1);
    await engine.workflows.transition(tenant, { id: 'o-1', to: 'processing' });
    expect(await balanceOf(tenant, 'a-1')).toBe(9_250);
    await engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' });
    expect(await stockOf(tenant, 'p-1')).toBe(10);
    expect(await balanceOf(tenant, 'a-1')).toBe(10_000);
  });

  it('publishes ORDER_<STATE> on every transition and refunds a return after delivery', async () => {
    const tenant = await shop();
    const k = engine.context.keys(tenant);
    await engine.orders.processOrder(tenant, order1);
    const orders = await listen(k.ordersChannel());

    for (const to of ['processing', 'shipped', 'delivered']) {
      await engine.workflows.transition(tenant, { id: 'o-1', to });
      expect(await stockOf(tenant, 'p-1')).toBe(7);
      expect(await balanceOf(tenant, 'a-1')).toBe(9_250);
    }
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'o-1', to: 'cancelled' }), 'INVALID_TRANSITION');
    const returned = await engine.workflows.transition(tenant, { id: 'o-1', to: 'returned' });
    expect(returned).toMatchObject({ state: 'returned', version: 5 });
    expect(await stockOf(tenant, 'p-1')).toBe(10);
    expect(await balanceOf(tenant, 'a-1')).toBe(10_000);

    await expect.poll(() => orders.messages.length).toBe(4);
    expect(orders.messages.map((m) => [m.type, m.state])).toEqual([
      ['ORDER_PROCESSING', 'processing'],
      ['ORDER_SHIPPED', 'shipped'],
      ['ORDER_DELIVERED', 'delivered'],
      ['ORDER_RETURNED', 'returned'],
    ]);
    const events = await streamEvents(tenant);
    expect(events.map((e) => e.type)).toEqual([
      'WORKFLOW_TRANSITION',
      'ORDER_CONFIRMED',
      'WORKFLOW_TRANSITION',
      'ORDER_PROCESSING',
      'WORKFLOW_TRANSITION',
      'ORDER_SHIPPED',
      'WORKFLOW_TRANSITION',
      'ORDER_DELIVERED',
      'WORKFLOW_TRANSITION',
      'ORDER_RETURNED',
    ]);
    expect(orders.messages[3]!.eventId).toBe(events[9]!.id);
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'o-1', to: 'returned' }), 'INVALID_TRANSITION');
    orders.close();
  });

  it('refuses to start a workflow of the order machine directly', async () => {
    const tenant = await shop();
    await engine.orders.processOrder(tenant, order1); // the order machine now exists
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.start(tenant, { id: 'o-2', machine: 'order' }), 'BAD_USER_INPUT');
    const k = engine.context.keys(tenant);
    const block = k.workflowBlock('o-2', 'order');
    const before = await snapshotTenant(redis, tenant);
    await expect(
      redis.call('FCALL', 'atomflow_wf_start', block.length, ...block, ...engine.context.eventArgs(k), 'o-2', 'order', '[]'),
    ).rejects.toThrow(/^BAD_USER_INPUT /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });

  it('reports the library version', async () => {
    expect(JSON.parse((await redis.call('FCALL_RO', 'atomflow_orders_version', 0)) as string)).toEqual({ library: 'atomflow_orders', version: '3' });
  });
});
