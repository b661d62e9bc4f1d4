/** Helpers of the cluster tests: tenants placed on given primaries, orders through a topology change. */
import { expect } from 'vitest';
import type { Cluster } from 'ioredis';
import { readConfig } from '../../src/config.js';
import { startTestServer, type Subscription, type TestServer } from '../api/harness.js';
import type { TestCluster } from '../setup/redis-cluster.js';
import { keySlot, slotOwner } from '../../src/redis/client.js';
import { tenantKeys } from '../../src/redis/keys.js';
import { uniqueTenant } from '../setup/helpers.js';

/** A test server on a cluster of a test's own (added to `servers`, which the test closes). */
export async function serverOn(
  cluster: TestCluster,
  servers: TestServer[],
  tenant: string,
  worker?: { enabled: boolean; tenants: null; tickMs: number },
): Promise<TestServer> {
  const redisCluster = readConfig({ REDIS_CLUSTER_NODES: cluster.seeds() }).redisCluster;
  const server = await startTestServer({ tenant, config: { redisCluster, ...(worker ? { worker: { ...readConfig({}).worker, ...worker } } : {}) } });
  servers.push(server);
  return server;
}

/** The hash slot of a tenant's keys, and the `host:port` of the primary the client sees owning it. */
export async function placeOf(cluster: Cluster, tenant: string): Promise<{ slot: number; owner: string }> {
  const slot = keySlot(tenantKeys(tenant).events());
  return { slot, owner: await slotOwner(cluster, slot) };
}

/** `count` fresh tenants whose slots live on `count` different primaries. */
export async function tenantsOnDistinctPrimaries(cluster: Cluster, count: number, label = 'spread'): Promise<string[]> {
  const byOwner = new Map<string, string>();
  for (let tries = 0; byOwner.size < count; tries++) {
    if (tries > 1000) throw new Error(`found no ${count} tenants on distinct primaries`);
    const tenant = uniqueTenant(label);
    const { owner } = await placeOf(cluster, tenant);
    if (owner && !byOwner.has(owner)) byOwner.set(owner, tenant);
  }
  return [...byOwner.values()];
}

const RESTOCK = `mutation($productId: ID!, $quantity: Int!) { restockProduct(productId: $productId, quantity: $quantity) { id stock } }`;
const DEPOSIT = `mutation($accountId: ID!, $amountCents: SafeInt!) { depositFunds(accountId: $accountId, amountCents: $amountCents) { id balanceCents } }`;
const PROCESS = `mutation($input: ProcessOrderInput!) { processOrder(input: $input) { id state } }`;
const STATE = `query($id: ID!, $after: String) { product(id: "p") { stock } account(id: $id) { balanceCents orders(first: 100, after: $after) { items { id } nextCursor } } }`;
const ORDER_EVENTS = `subscription { orderEvents { eventId type orderId } }`;
const STOCK = 10_000;
const FUNDS = 10_000_000;
const PRICE = 100;

/**
 * Orders of one account placed one after the other through `t` before, during and after `change`
 * (20 more once it is done), while a subscription listens. An order answered SERVICE_UNAVAILABLE (a
 * failover under way) is sent again with the same orderId, as a client does: processOrder is
 * idempotent by order id. Then checks the books: every order accepted once and listed in order,
 * stock and money exact, every order's event received once and in order. Returns how many orders
 * were placed before and during the change.
 */
export async function ordersThrough(t: TestServer, change: () => Promise<void>): Promise<{ before: number; during: number }> {
  const sub: Subscription = await t.subscribe(ORDER_EVENTS);
  const user = 'buyer';
  await t.ok(RESTOCK, { productId: 'p', quantity: STOCK });
  await t.ok(DEPOSIT, { accountId: user, amountCents: FUNDS });
  const placed: string[] = [];
  let stopAt = Infinity;
  const placing = (async () => {
    for (let i = 0; placed.length < stopAt; i++) {
      if (i > 5000) throw new Error('the change did not end');
      const orderId = `o${String(i).padStart(4, '0')}`;
      for (let attempt = 0; ; attempt++) {
        const res = await t.gql<{ processOrder: { id: string; state: string } }>(PROCESS, {
          input: { orderId, userId: user, productId: 'p', quantity: 1, unitPriceCents: PRICE },
        });
        if (res.errors?.[0]?.extensions?.code === 'SERVICE_UNAVAILABLE' && attempt < 100) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        expect(res.errors).toBeUndefined();
        expect(res.data?.processOrder).toEqual({ id: orderId, state: 'pending' });
        break;
      }
      placed.push(orderId);
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  const before = placed.length;
  await change();
  const during = placed.length;
  stopAt = placed.length + 20;
  await placing;

  type State = { product: { stock: number }; account: { balanceCents: number; orders: { items: { id: string }[]; nextCursor: string | null } } };
  const state = await t.ok<State>(STATE, { id: user });
  expect(state.product.stock).toBe(STOCK - placed.length);
  expect(state.account.balanceCents).toBe(FUNDS - PRICE * placed.length);
  const listed = state.account.orders.items.map((o) => o.id);
  for (let after = state.account.orders.nextCursor; after; ) {
    const page = (await t.ok<State>(STATE, { id: user, after })).account.orders;
    listed.push(...page.items.map((o) => o.id));
    after = page.nextCursor;
  }
  expect(listed).toEqual([...placed].reverse()); // newest first
  // the subscription followed the slot: every order's event, once, in order
  const events = (await sub.waitFor(placed.length, 15_000)).map((e) => e.orderEvents);
  expect(events.map((e) => e.orderId)).toEqual(placed);
  expect(new Set(events.map((e) => e.eventId)).size).toBe(placed.length);
  return { before, during };
}
