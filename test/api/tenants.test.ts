/**
 * Tenants: the tenant comes from the token alone. Two tenants on one server with the same ids
 * (product, account, order, workflow, saga data, schedule entry) and different values: every read
 * answers its own tenant's values, writes through one leave the other's keys exactly as they were,
 * and subscribers of one receive none of the other's events, over HTTP and WebSocket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './harness.js';
import { snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { RawSocket } from './ws-raw.js';

let t: TestServer;
let A: string;
let B: string;
const tok: Record<string, string> = {};
const sockets: RawSocket[] = [];

/** Per tenant: the same ids, its own numbers. */
const VALUES = {
  A: { stock: 10, balance: 1000, quantity: 1, price: 100, title: 'from A', member: 'a-only' },
  B: { stock: 20, balance: 2000, quantity: 2, price: 300, title: 'from B', member: 'b-only' },
};

async function as(tenant: 'A' | 'B', query: string, variables?: Record<string, unknown>, role = 'admin') {
  const res = await t.gql(query, variables, { token: tok[`${role}${tenant}`] });
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return res.data!;
}

beforeAll(async () => {
  t = await startTestServer();
  A = t.tenant;
  B = uniqueTenant('other');
  for (const [name, tenant] of [
    ['A', A],
    ['B', B],
  ] as const) {
    tok[`admin${name}`] = await t.token({ tenant, role: 'admin' });
    tok[`user${name}`] = await t.token({ tenant, role: 'user', sub: 'alice' });
    const v = VALUES[name];
    await as(name, `mutation($s: Int!, $b: SafeInt!) { restockProduct(productId: "widget", quantity: $s) { id } depositFunds(accountId: "alice", amountCents: $b) { id } }`, {
      s: v.stock + v.quantity,
      b: v.balance + v.quantity * v.price,
    });
    await as(name, `mutation($q: Int!, $p: SafeInt!) { processOrder(input: { orderId: "order-1", userId: "alice", productId: "widget", quantity: $q, unitPriceCents: $p }) { id } }`, {
      q: v.quantity,
      p: v.price,
    });
    await as(name, `mutation { defineStateMachine(input: { name: "ticket", initialState: "open", states: ["open", "closed"], transitions: [{ from: "open", to: ["closed"] }] }) { name } }`);
    await as(name, `mutation($m: JSON) { startWorkflow(input: { id: "ticket-1", machine: "ticket", metadata: $m }) { id } }`, { m: { title: v.title } });
    await as(name, `mutation($m: String!) { executeSaga(input: { id: "saga-1", steps: [{ op: SADD, key: "tags", member: $m }] }) { id } }`, { m: v.member });
  }
});
afterAll(async () => {
  sockets.forEach((s) => s.close());
  await t?.close();
});

const READ = `{
  product(id: "widget") { stock }
  account(id: "alice") { balanceCents orders { items { id totalCents } } }
  order(id: "order-1") { quantity unitPriceCents totalCents workflow { metadata history { entries { to } } } }
  workflow(id: "ticket-1") { metadata }
  workflows(machine: "ticket") { items { id metadata } }
  stateMachines { name }
  saga(id: "saga-1") { status }
  dataSet(key: "tags") { members }
}`;

function expected(name: 'A' | 'B') {
  const v = VALUES[name];
  return {
    product: { stock: v.stock },
    account: { balanceCents: v.balance, orders: { items: [{ id: 'order-1', totalCents: v.quantity * v.price }] } },
    order: { quantity: v.quantity, unitPriceCents: v.price, totalCents: v.quantity * v.price, workflow: { metadata: {}, history: { entries: [{ to: 'pending' }] } } },
    workflow: { metadata: { title: v.title } },
    workflows: { items: [{ id: 'ticket-1', metadata: { title: v.title } }] },
    stateMachines: [{ name: 'order' }, { name: 'ticket' }],
    saga: { status: 'COMPLETED' },
    dataSet: { members: [v.member] },
  };
}

describe('two tenants, the same ids', () => {
  it('each token reads its own tenant only, over HTTP', async () => {
    expect(await as('A', READ)).toEqual(expected('A'));
    expect(await as('B', READ)).toEqual(expected('B'));
  });

  it('each token reads its own tenant only, over WebSocket', async () => {
    for (const name of ['A', 'B'] as const) {
      const { socket } = await RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${tok[`admin${name}`]}` });
      sockets.push(socket!);
      expect(await socket!.run(READ)).toEqual({ data: expected(name) });
    }
  });

  it("a user of A named like a user of B sees A's account and order only", async () => {
    for (const name of ['A', 'B'] as const) {
      const data = await as(name, `{ account(id: "alice") { balanceCents } order(id: "order-1") { totalCents } }`, undefined, 'user');
      expect(data).toEqual({ account: { balanceCents: VALUES[name].balance }, order: { totalCents: VALUES[name].quantity * VALUES[name].price } });
    }
  });

  it("writes through one tenant leave the other's keys exactly as they were", async () => {
    const beforeB = await snapshotTenant(t.redis, B);
    const beforeA = await snapshotTenant(t.redis, A);
    await as('A', `mutation { depositFunds(accountId: "alice", amountCents: 5) { id } restockProduct(productId: "widget", quantity: 5) { id } }`);
    await as('A', `mutation { transitionWorkflow(input: { id: "ticket-1", to: "closed" }) { id } }`);
    await as('A', `mutation { executeSaga(input: { id: "saga-2", steps: [{ op: SADD, key: "tags", member: "more" }] }) { id } }`);
    await as('A', `mutation { transitionWorkflow(input: { id: "order-1", to: "cancelled" }) { state } }`, undefined, 'user');
    expect(await snapshotTenant(t.redis, B)).toEqual(beforeB);
    expect(await snapshotTenant(t.redis, A)).not.toEqual(beforeA);
    expect((await as('B', `{ order(id: "order-1") { state } workflow(id: "ticket-1") { state } }`))).toEqual({ order: { state: 'pending' }, workflow: { state: 'open' } });
  });

  it("subscribers of one tenant receive none of the other's events (0 leaks)", async () => {
    const subscribers: ReturnType<RawSocket['subscribe']>[] = [];
    for (const [token, query] of [
      [tok.adminB, `subscription { orderEvents { orderId userId totalCents } }`],
      [tok.adminB, `subscription { workflowEvents { workflowId to } }`],
      [tok.userB, `subscription { orderEvents { orderId userId totalCents } }`],
    ] as const) {
      const { socket } = await RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${token}` });
      sockets.push(socket!);
      subscribers.push(socket!.subscribe(query));
    }
    const keysB = t.server.engine.context.keys(B);
    await expect.poll(() => t.server.listenerCount(keysB.ordersChannel()) + t.server.listenerCount(keysB.workflowChannel())).toBe(3);

    // first in A: orders of the same user id, a workflow of the same id
    await as('A', `mutation { restockProduct(productId: "widget", quantity: 5) { id } depositFunds(accountId: "alice", amountCents: 10000) { id } }`);
    await as('A', `mutation { processOrder(input: { orderId: "order-2", userId: "alice", productId: "widget", quantity: 1, unitPriceCents: 7 }) { id } }`);
    await as('A', `mutation { startWorkflow(input: { id: "ticket-2", machine: "ticket" }) { id } }`);
    await as('A', `mutation { transitionWorkflow(input: { id: "order-2", to: "processing" }) { id } }`);
    // then in B: had anything of A's leaked, it would arrive before these
    await as('B', `mutation { processOrder(input: { orderId: "order-2", userId: "alice", productId: "widget", quantity: 1, unitPriceCents: 3 }) { id } }`);
    await as('B', `mutation { startWorkflow(input: { id: "ticket-2", machine: "ticket" }) { id } }`);
    await expect.poll(() => subscribers.map((s) => s.events.length)).toEqual([1, 2, 1]);
    expect(subscribers[0]!.events).toEqual([{ orderEvents: { orderId: 'order-2', userId: 'alice', totalCents: 3 } }]);
    expect(subscribers[2]!.events).toEqual(subscribers[0]!.events);
    // B's order is a workflow too: its start, then ticket-2's; nothing of A's
    expect(subscribers[1]!.events).toEqual([
      { workflowEvents: { workflowId: 'order-2', to: 'pending' } },
      { workflowEvents: { workflowId: 'ticket-2', to: 'open' } },
    ]);
    // and nothing more arrives: A's last event was published before B's first
    await as('B', `mutation { startWorkflow(input: { id: "ticket-3", machine: "ticket" }) { id } }`);
    await expect.poll(() => subscribers[1]!.events.length).toBe(3);
    expect(subscribers.map((s) => s.events.length)).toEqual([1, 3, 1]);
  });
});
