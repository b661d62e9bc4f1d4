/**
 * Orders over GraphQL: inventory and balances, processOrder with every rejection, the order
 * lifecycle through transitionWorkflow (refund and restock exactly once), and `orderEvents`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  expectGraphQLErrorWithoutWrites,
  startTestServer,
  subscriberCount,
  type Subscription,
  type TestServer,
  uid,
} from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

/**
 * Every test closes its subscriptions and waits until the server has let go of the channel, so no
 * listener outlives its test. The userId filter test opens its second listener through a second
 * server instance on the same tenant, which also checks the relay between instances.
 */
const openSubs: Subscription[] = [];
async function subscribe(server: TestServer, query: string, variables: Record<string, unknown>): Promise<Subscription> {
  const sub = await server.subscribe(query, variables);
  openSubs.push(sub);
  return sub;
}
afterEach(async () => {
  openSubs.splice(0).forEach((s) => s.close());
  const channel = t.server.engine.context.keys(t.tenant).ordersChannel();
  await expect.poll(() => subscriberCount(t.redis, channel), { timeout: 5000 }).toBe(0);
});

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const RESTOCK = `mutation($productId: ID!, $quantity: Int!) { restockProduct(productId: $productId, quantity: $quantity) { id stock } }`;
const DEPOSIT = `mutation($accountId: ID!, $amountCents: SafeInt!) { depositFunds(accountId: $accountId, amountCents: $amountCents) { id balanceCents } }`;
const PRODUCT = `query($id: ID!) { product(id: $id) { id stock } }`;
const ACCOUNT = `query($id: ID!) { account(id: $id) { id balanceCents } }`;
const ORDER_FIELDS = `id userId productId quantity unitPriceCents totalCents state createdAt workflow { id machine state version allowedTransitions }`;
const PROCESS = `mutation($input: ProcessOrderInput!) { processOrder(input: $input) { ${ORDER_FIELDS} } }`;
const ORDER = `query($id: ID!) { order(id: $id) { ${ORDER_FIELDS} } }`;
const ACCOUNT_ORDERS = `query($id: ID!, $first: Int, $after: String) { account(id: $id) { id balanceCents orders(first: $first, after: $after) { items { id totalCents state } nextCursor } } }`;
const TRANSITION = `mutation($input: TransitionWorkflowInput!) { transitionWorkflow(input: $input) { id state version updatedAt allowedTransitions } }`;
const ORDER_EVENTS = `subscription($userId: ID) { orderEvents(userId: $userId) { eventId type orderId userId state totalCents at } }`;

async function stockOf(productId: string): Promise<number | null> {
  const data = await t.ok(PRODUCT, { id: productId });
  return data.product === null ? null : data.product.stock;
}

async function balanceOf(accountId: string): Promise<number | null> {
  const data = await t.ok(ACCOUNT, { id: accountId });
  return data.account === null ? null : data.account.balanceCents;
}

/** A funded account and a stocked product, fresh for one test. */
async function setup(stock: number, balance: number): Promise<{ user: string; product: string }> {
  const user = uid('u');
  const product = uid('p');
  await t.ok(RESTOCK, { productId: product, quantity: stock });
  await t.ok(DEPOSIT, { accountId: user, amountCents: balance });
  return { user, product };
}

async function placeOrder(input: { orderId?: string; userId: string; productId: string; quantity: number; unitPriceCents: number }) {
  const data = await t.ok(PROCESS, { input: { orderId: input.orderId ?? uid('o'), ...input } });
  return data.processOrder;
}

async function move(id: string, to: string) {
  const data = await t.ok(TRANSITION, { input: { id, to } });
  return data.transitionWorkflow;
}

/** The tenant's event stream entries of one order, oldest first, as {id, type, data}. */
async function streamEntriesOf(orderId: string): Promise<{ id: string; type: string; data: Record<string, any> }[]> {
  const key = t.server.engine.context.keys(t.tenant).events();
  const entries = await t.redis.xrange(key, '-', '+');
  return entries
    .map(([id, fields]) => {
      const map: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) map[fields[i]!] = fields[i + 1]!;
      return { id, type: map.type ?? '', data: JSON.parse(map.data ?? '{}') as Record<string, any> };
    })
    .filter((e) => e.data.orderId === orderId);
}

describe('inventory and balances', () => {
  it('restockProduct adds to the stock and product() reads it; never stocked reads as null', async () => {
    const p = uid('p');
    expect(await t.ok(PRODUCT, { id: p })).toEqual({ product: null });
    expect((await t.ok(RESTOCK, { productId: p, quantity: 5 })).restockProduct).toEqual({ id: p, stock: 5 });
    expect((await t.ok(RESTOCK, { productId: p, quantity: 7 })).restockProduct).toEqual({ id: p, stock: 12 });
    expect(await t.ok(PRODUCT, { id: p })).toEqual({ product: { id: p, stock: 12 } });
  });

  it('depositFunds adds to the balance and account() reads it; never funded reads as null', async () => {
    const a = uid('a');
    expect(await t.ok(ACCOUNT, { id: a })).toEqual({ account: null });
    expect((await t.ok(DEPOSIT, { accountId: a, amountCents: 1000 })).depositFunds).toEqual({ id: a, balanceCents: 1000 });
    expect((await t.ok(DEPOSIT, { accountId: a, amountCents: 250 })).depositFunds).toEqual({ id: a, balanceCents: 1250 });
    expect(await t.ok(ACCOUNT, { id: a })).toEqual({ account: { id: a, balanceCents: 1250 } });
    // the upper bound itself is accepted (10^13 cents in total)
    const rich = uid('a');
    expect((await t.ok(DEPOSIT, { accountId: rich, amountCents: 10 ** 13 })).depositFunds).toEqual({ id: rich, balanceCents: 10 ** 13 });
  });

  it('rejects a restock of 0 or a negative quantity, and a non-integer quantity variable', async () => {
    const p = uid('p');
    await t.ok(RESTOCK, { productId: p, quantity: 3 });
    for (const quantity of [0, -1, 1.5]) {
      await expectGraphQLErrorWithoutWrites(t, RESTOCK, { productId: p, quantity }, 'BAD_USER_INPUT');
    }
    // never created either: the product is still null
    await expectGraphQLErrorWithoutWrites(t, RESTOCK, { productId: uid('p'), quantity: 0 }, 'BAD_USER_INPUT');
    expect(await stockOf(p)).toBe(3);
  });

  it('rejects a deposit of 0, a negative amount, more than 10^13 cents and a fractional amount', async () => {
    const a = uid('a');
    await t.ok(DEPOSIT, { accountId: a, amountCents: 100 });
    for (const amountCents of [0, -5, 10 ** 13 + 1, 1.5]) {
      await expectGraphQLErrorWithoutWrites(t, DEPOSIT, { accountId: a, amountCents }, 'BAD_USER_INPUT');
    }
    // a balance that would go above 10^13 is rejected too
    await expectGraphQLErrorWithoutWrites(t, DEPOSIT, { accountId: a, amountCents: 10 ** 13 }, 'BAD_USER_INPUT');
    expect(await balanceOf(a)).toBe(100);
  });

  it('rejects ids with {, } or : in restock, deposit and the reads', async () => {
    for (const bad of ['p{x}', 'p}x', 'p{', 'a:b', '{default}']) {
      await expectGraphQLErrorWithoutWrites(t, RESTOCK, { productId: bad, quantity: 1 }, 'BAD_USER_INPUT');
      await expectGraphQLErrorWithoutWrites(t, DEPOSIT, { accountId: bad, amountCents: 1 }, 'BAD_USER_INPUT');
      await expectGraphQLErrorWithoutWrites(t, PRODUCT, { id: bad }, 'BAD_USER_INPUT');
      await expectGraphQLErrorWithoutWrites(t, ACCOUNT, { id: bad }, 'BAD_USER_INPUT');
    }
  });
});

describe('processOrder', () => {
  it('deducts stock and balance and answers the order with its workflow', async () => {
    const { user, product } = await setup(10, 10_000);
    const orderId = uid('o');
    const before = Date.now();
    const order = await placeOrder({ orderId, userId: user, productId: product, quantity: 3, unitPriceCents: 1250 });
    expect(order).toMatchObject({
      id: orderId,
      userId: user,
      productId: product,
      quantity: 3,
      unitPriceCents: 1250,
      totalCents: 3750,
      state: 'pending',
      workflow: { id: orderId, machine: 'order', state: 'pending', version: 1 },
    });
    expect([...order.workflow.allowedTransitions].sort()).toEqual(['cancelled', 'processing']);
    expect(order.createdAt).toMatch(ISO_UTC);
    expect(Date.parse(order.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(order.createdAt)).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await stockOf(product)).toBe(7);
    expect(await balanceOf(user)).toBe(10_000 - 3750);
    // order(id) reads the same order back
    expect((await t.ok(ORDER, { id: orderId })).order).toEqual(order);
  });

  it('a free order (unitPriceCents 0) is accepted and charges nothing', async () => {
    const { user, product } = await setup(2, 1);
    const order = await placeOrder({ userId: user, productId: product, quantity: 2, unitPriceCents: 0 });
    expect(order.totalCents).toBe(0);
    expect(await stockOf(product)).toBe(0);
    expect(await balanceOf(user)).toBe(1);
  });

  it('order(id) is null for an unknown id and for a workflow that is not an order', async () => {
    expect(await t.ok(ORDER, { id: uid('o') })).toEqual({ order: null });
    const m = uid('m').replace(/-/g, '_');
    await t.ok(`mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name } }`, {
      input: { name: m, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] },
    });
    const wid = uid('w');
    await t.ok(`mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id } }`, { input: { id: wid, machine: m } });
    expect(await t.ok(ORDER, { id: wid })).toEqual({ order: null });
  });

  it('Account.orders lists the orders newest first, with paging', async () => {
    const { user, product } = await setup(10, 100_000);
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const order = await placeOrder({ userId: user, productId: product, quantity: 1, unitPriceCents: 100 * i });
      ids.push(order.id);
    }
    const all = (await t.ok(ACCOUNT_ORDERS, { id: user })).account;
    expect(all.balanceCents).toBe(100_000 - 600);
    expect(all.orders).toEqual({
      items: [
        { id: ids[2], totalCents: 300, state: 'pending' },
        { id: ids[1], totalCents: 200, state: 'pending' },
        { id: ids[0], totalCents: 100, state: 'pending' },
      ],
      nextCursor: null,
    });
    const page1 = (await t.ok(ACCOUNT_ORDERS, { id: user, first: 2 })).account.orders;
    expect(page1.items.map((o: { id: string }) => o.id)).toEqual([ids[2], ids[1]]);
    expect(typeof page1.nextCursor).toBe('string');
    const page2 = (await t.ok(ACCOUNT_ORDERS, { id: user, first: 2, after: page1.nextCursor })).account.orders;
    expect(page2).toEqual({ items: [{ id: ids[0], totalCents: 100, state: 'pending' }], nextCursor: null });
    // another account's orders are not listed
    const other = await setup(1, 1000);
    expect((await t.ok(ACCOUNT_ORDERS, { id: other.user })).account.orders).toEqual({ items: [], nextCursor: null });
  });

  it('OUT_OF_STOCK when the product has fewer units than ordered', async () => {
    const { user, product } = await setup(2, 10_000);
    const res = await expectGraphQLErrorWithoutWrites(
      t,
      PROCESS,
      { input: { orderId: uid('o'), userId: user, productId: product, quantity: 3, unitPriceCents: 10 } },
      'OUT_OF_STOCK',
    );
    expect(res.errors?.[0]?.message).not.toMatch(/ERR|script|@user_function/i);
    expect(await stockOf(product)).toBe(2);
    expect(await balanceOf(user)).toBe(10_000);
  });

  it('INSUFFICIENT_FUNDS when the balance is below the total', async () => {
    const { user, product } = await setup(5, 999);
    await expectGraphQLErrorWithoutWrites(
      t,
      PROCESS,
      { input: { orderId: uid('o'), userId: user, productId: product, quantity: 2, unitPriceCents: 500 } },
      'INSUFFICIENT_FUNDS',
    );
    expect(await stockOf(product)).toBe(5);
    expect(await balanceOf(user)).toBe(999);
    // exactly the balance is enough
    await placeOrder({ userId: user, productId: product, quantity: 1, unitPriceCents: 999 });
    expect(await balanceOf(user)).toBe(0);
  });

  it('NOT_FOUND for a product never stocked and for an account never funded', async () => {
    const { user, product } = await setup(5, 1000);
    await expectGraphQLErrorWithoutWrites(
      t,
      PROCESS,
      { input: { orderId: uid('o'), userId: user, productId: uid('p'), quantity: 1, unitPriceCents: 1 } },
      'NOT_FOUND',
    );
    await expectGraphQLErrorWithoutWrites(
      t,
      PROCESS,
      { input: { orderId: uid('o'), userId: uid('u'), productId: product, quantity: 1, unitPriceCents: 1 } },
      'NOT_FOUND',
    );
  });

  it('ALREADY_EXISTS when the orderId is used by a workflow that is not an order', async () => {
    const { user, product } = await setup(5, 1000);
    const m = uid('m').replace(/-/g, '_');
    await t.ok(`mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name } }`, {
      input: { name: m, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] },
    });
    const wid = uid('w');
    await t.ok(`mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id } }`, { input: { id: wid, machine: m } });
    await expectGraphQLErrorWithoutWrites(
      t,
      PROCESS,
      { input: { orderId: wid, userId: user, productId: product, quantity: 1, unitPriceCents: 1 } },
      'ALREADY_EXISTS',
    );
    expect((await t.ok(`query($id: ID!) { workflow(id: $id) { machine state } }`, { id: wid })).workflow).toEqual({ machine: m, state: 'a' });
  });

  it('replaying the same orderId and parameters returns the order and charges nothing', async () => {
    const { user, product } = await setup(10, 10_000);
    const input = { orderId: uid('o'), userId: user, productId: product, quantity: 2, unitPriceCents: 300 };
    const first = (await t.ok(PROCESS, { input })).processOrder;
    expect(await stockOf(product)).toBe(8);
    expect(await balanceOf(user)).toBe(9400);
    const before = await t.snapshot();
    const again = (await t.ok(PROCESS, { input })).processOrder;
    expect(again).toEqual(first);
    expect(await t.snapshot()).toEqual(before); // no charge, no second order, no event
    expect(await stockOf(product)).toBe(8);
    expect(await balanceOf(user)).toBe(9400);
    expect((await t.ok(ACCOUNT_ORDERS, { id: user })).account.orders.items).toHaveLength(1);
  });

  it('IDEMPOTENCY_CONFLICT when the orderId is reused with other parameters', async () => {
    const { user, product } = await setup(10, 10_000);
    const other = await setup(10, 10_000);
    const input = { orderId: uid('o'), userId: user, productId: product, quantity: 2, unitPriceCents: 300 };
    await t.ok(PROCESS, { input });
    for (const change of [{ quantity: 3 }, { unitPriceCents: 301 }, { productId: other.product }, { userId: other.user }]) {
      await expectGraphQLErrorWithoutWrites(t, PROCESS, { input: { ...input, ...change } }, 'IDEMPOTENCY_CONFLICT');
    }
  });

  it('BAD_USER_INPUT for quantity 0 or -1, a non-integer quantity, a negative or fractional price', async () => {
    const { user, product } = await setup(10, 10_000);
    const base = { orderId: uid('o'), userId: user, productId: product, quantity: 1, unitPriceCents: 100 };
    for (const change of [{ quantity: 0 }, { quantity: -1 }, { quantity: 1.5 }, { quantity: '2' }, { unitPriceCents: -1 }, { unitPriceCents: 1.5 }]) {
      await expectGraphQLErrorWithoutWrites(t, PROCESS, { input: { ...base, ...change } }, 'BAD_USER_INPUT');
    }
    // a total above 10^13 cents
    await expectGraphQLErrorWithoutWrites(t, PROCESS, { input: { ...base, quantity: 2, unitPriceCents: 10 ** 13 } }, 'BAD_USER_INPUT');
    expect(await t.ok(ORDER, { id: base.orderId })).toEqual({ order: null });
  });

  it('BAD_USER_INPUT for ids with {, } or :', async () => {
    const { user, product } = await setup(10, 10_000);
    const base = { orderId: uid('o'), userId: user, productId: product, quantity: 1, unitPriceCents: 100 };
    for (const bad of ['x{y', 'x}y', 'x:y', `{${t.tenant}}`]) {
      for (const field of ['orderId', 'userId', 'productId']) {
        await expectGraphQLErrorWithoutWrites(t, PROCESS, { input: { ...base, [field]: bad } }, 'BAD_USER_INPUT');
      }
    }
    await expectGraphQLErrorWithoutWrites(t, ORDER, { id: 'x:y' }, 'BAD_USER_INPUT');
  });
});

describe('the order lifecycle', () => {
  it('moves through processing, shipped, delivered and returned; returned refunds and restocks', async () => {
    const { user, product } = await setup(10, 10_000);
    const order = await placeOrder({ userId: user, productId: product, quantity: 4, unitPriceCents: 250 });
    expect(await stockOf(product)).toBe(6);
    expect(await balanceOf(user)).toBe(9000);

    // pending cannot skip to shipped
    const bad = await expectGraphQLErrorWithoutWrites(t, TRANSITION, { input: { id: order.id, to: 'shipped' } }, 'INVALID_TRANSITION');
    expect(bad.errors?.[0]?.message).toMatch(/pending/);
    expect(bad.errors?.[0]?.message).toMatch(/shipped/);

    expect(await move(order.id, 'processing')).toMatchObject({ state: 'processing', version: 2 });
    expect(await move(order.id, 'shipped')).toMatchObject({ state: 'shipped', version: 3 });
    const delivered = await move(order.id, 'delivered');
    expect(delivered).toMatchObject({ state: 'delivered', version: 4, allowedTransitions: ['returned'] });
    // nothing refunded so far
    expect(await stockOf(product)).toBe(6);
    expect(await balanceOf(user)).toBe(9000);

    expect(await move(order.id, 'returned')).toMatchObject({ state: 'returned', version: 5, allowedTransitions: [] });
    expect(await stockOf(product)).toBe(10);
    expect(await balanceOf(user)).toBe(10_000);
    expect((await t.ok(ORDER, { id: order.id })).order).toMatchObject({ state: 'returned', workflow: { state: 'returned', version: 5 } });
    // returned is terminal: no second refund
    await expectGraphQLErrorWithoutWrites(t, TRANSITION, { input: { id: order.id, to: 'returned' } }, 'INVALID_TRANSITION');
    await expectGraphQLErrorWithoutWrites(t, TRANSITION, { input: { id: order.id, to: 'cancelled' } }, 'INVALID_TRANSITION');
    expect(await stockOf(product)).toBe(10);
    expect(await balanceOf(user)).toBe(10_000);
  });

  it('cancel refunds totalCents and restocks exactly once', async () => {
    const { user, product } = await setup(5, 5000);
    const keep = await placeOrder({ userId: user, productId: product, quantity: 1, unitPriceCents: 700 });
    const order = await placeOrder({ userId: user, productId: product, quantity: 2, unitPriceCents: 900 });
    expect(await stockOf(product)).toBe(2);
    expect(await balanceOf(user)).toBe(5000 - 700 - 1800);
    await move(order.id, 'processing');
    expect(await move(order.id, 'cancelled')).toMatchObject({ state: 'cancelled', version: 3, allowedTransitions: [] });
    expect(await stockOf(product)).toBe(4);
    expect(await balanceOf(user)).toBe(5000 - 700);
    // a second cancel is an invalid transition and refunds nothing
    await expectGraphQLErrorWithoutWrites(t, TRANSITION, { input: { id: order.id, to: 'cancelled' } }, 'INVALID_TRANSITION');
    await expectGraphQLErrorWithoutWrites(t, TRANSITION, { input: { id: order.id, to: 'processing' } }, 'INVALID_TRANSITION');
    // replaying the original processOrder does not charge again either
    const before = await t.snapshot();
    const replay = (await t.ok(PROCESS, { input: { orderId: order.id, userId: user, productId: product, quantity: 2, unitPriceCents: 900 } })).processOrder;
    expect(replay).toMatchObject({ id: order.id, state: 'cancelled', totalCents: 1800, workflow: { state: 'cancelled', version: 3 } });
    expect(await t.snapshot()).toEqual(before);
    expect(await stockOf(product)).toBe(4);
    expect(await balanceOf(user)).toBe(5000 - 700);
    const listed = (await t.ok(ACCOUNT_ORDERS, { id: user })).account.orders.items;
    expect(listed).toEqual([
      { id: order.id, totalCents: 1800, state: 'cancelled' },
      { id: keep.id, totalCents: 700, state: 'pending' },
    ]);
  });

  it('concurrent cancels of one order refund it once', async () => {
    const { user, product } = await setup(3, 3000);
    const order = await placeOrder({ userId: user, productId: product, quantity: 3, unitPriceCents: 1000 });
    expect(await balanceOf(user)).toBe(0);
    const results = await Promise.all(Array.from({ length: 8 }, () => t.gql(TRANSITION, { input: { id: order.id, to: 'cancelled' } })));
    const succeeded = results.filter((r) => !r.errors);
    expect(succeeded).toHaveLength(1);
    for (const r of results.filter((r) => r.errors)) expect(r.errors?.[0]?.extensions?.code).toBe('INVALID_TRANSITION');
    expect(await stockOf(product)).toBe(3);
    expect(await balanceOf(user)).toBe(3000);
  });

  it('an unknown order id is NOT_FOUND', async () => {
    await expectGraphQLErrorWithoutWrites(t, TRANSITION, { input: { id: uid('o'), to: 'processing' } }, 'NOT_FOUND');
  });
});

describe('orderEvents', () => {
  const servers: TestServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it('delivers ORDER_CONFIRMED then one event per transition, with stream ids, totals and times', async () => {
    const { user, product } = await setup(10, 10_000);
    const sub = await subscribe(t, ORDER_EVENTS, { userId: user });
    const order = await placeOrder({ userId: user, productId: product, quantity: 3, unitPriceCents: 333 });
    const processing = await move(order.id, 'processing');
    const shipped = await move(order.id, 'shipped');
    const delivered = await move(order.id, 'delivered');
    const events = (await sub.waitFor(4)).map((e) => e.orderEvents);
    expect(sub.errors).toEqual([]);
    expect(events.map((e) => [e.type, e.state])).toEqual([
      ['ORDER_CONFIRMED', 'pending'],
      ['ORDER_PROCESSING', 'processing'],
      ['ORDER_SHIPPED', 'shipped'],
      ['ORDER_DELIVERED', 'delivered'],
    ]);
    for (const e of events) {
      expect(e).toMatchObject({ orderId: order.id, userId: user, totalCents: 999 });
      expect(e.at).toMatch(ISO_UTC);
    }
    expect(events.map((e) => e.at)).toEqual([order.createdAt, processing.updatedAt, shipped.updatedAt, delivered.updatedAt]);

    // eventId is the id of the entry in the tenant's event stream
    const stream = (await streamEntriesOf(order.id)).filter((e) => e.type.startsWith('ORDER_'));
    expect(stream.map((e) => e.id)).toEqual(events.map((e) => e.eventId));
    expect(stream.map((e) => e.type)).toEqual(events.map((e) => e.type));
    for (const [i, e] of events.entries()) {
      expect(stream[i]?.data).toMatchObject({ orderId: order.id, userId: user, state: e.state, totalCents: 999 });
      // a stream id starts with the millisecond time it was added (Redis' clock, as `at` is)
      expect(Math.abs(Number(e.eventId.split('-')[0]) - Date.parse(e.at))).toBeLessThanOrEqual(50);
    }
  });

  it('a cancel is delivered as ORDER_CANCELLED with the refunded total', async () => {
    const { user, product } = await setup(10, 10_000);
    const sub = await subscribe(t, ORDER_EVENTS, { userId: user });
    const order = await placeOrder({ userId: user, productId: product, quantity: 1, unitPriceCents: 4321 });
    await move(order.id, 'cancelled');
    const events = (await sub.waitFor(2)).map((e) => e.orderEvents);
    expect(events.map((e) => [e.type, e.state, e.totalCents])).toEqual([
      ['ORDER_CONFIRMED', 'pending', 4321],
      ['ORDER_CANCELLED', 'cancelled', 4321],
    ]);
  });

  it('filters by userId: a subscriber for one account does not receive another account\'s events', async () => {
    const a = await setup(10, 10_000);
    const b = await setup(10, 10_000);
    const subA = await subscribe(t, ORDER_EVENTS, { userId: a.user });
    const t2 = await startTestServer({ tenant: t.tenant });
    servers.push(t2);
    const subAll = await subscribe(t2, ORDER_EVENTS, {});
    // B's event first, then A's: if the filter let B's through, it would arrive before A's
    const orderB = await placeOrder({ userId: b.user, productId: b.product, quantity: 1, unitPriceCents: 10 });
    const orderA = await placeOrder({ userId: a.user, productId: a.product, quantity: 2, unitPriceCents: 20 });
    await move(orderB.id, 'processing');
    await move(orderA.id, 'processing');
    const all = (await subAll.waitFor(4)).map((e) => e.orderEvents);
    expect(all.map((e) => [e.orderId, e.type])).toEqual([
      [orderB.id, 'ORDER_CONFIRMED'],
      [orderA.id, 'ORDER_CONFIRMED'],
      [orderB.id, 'ORDER_PROCESSING'],
      [orderA.id, 'ORDER_PROCESSING'],
    ]);
    const onlyA = (await subA.waitFor(2)).map((e) => e.orderEvents);
    expect(onlyA.map((e) => [e.orderId, e.userId, e.type, e.totalCents])).toEqual([
      [orderA.id, a.user, 'ORDER_CONFIRMED', 40],
      [orderA.id, a.user, 'ORDER_PROCESSING', 40],
    ]);
    // by now subAll has seen every event, so subA has had every chance to receive B's
    expect(subA.events).toHaveLength(2);
  });

  it('a rejected order publishes nothing', async () => {
    const { user, product } = await setup(1, 10_000);
    const sub = await subscribe(t, ORDER_EVENTS, { userId: user });
    await expectGraphQLErrorWithoutWrites(
      t,
      PROCESS,
      { input: { orderId: uid('o'), userId: user, productId: product, quantity: 2, unitPriceCents: 1 } },
      'OUT_OF_STOCK',
    );
    const ok1 = await placeOrder({ userId: user, productId: product, quantity: 1, unitPriceCents: 1 });
    const events = (await sub.waitFor(1)).map((e) => e.orderEvents);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ orderId: ok1.id, type: 'ORDER_CONFIRMED' });
  });
});
