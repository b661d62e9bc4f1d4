/**
 * A cluster of its own (this file changes its topology): a primary added and a tenant's slot moved
 * onto it while orders go on, and the scheduler worker applying due entries of tenants on every
 * primary.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis, type Cluster } from 'ioredis';
import { readConfig } from '../../src/config.js';
import { startTestServer, type TestServer, uid } from '../api/harness.js';
import { uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';
import { startTestCluster, type TestCluster } from '../setup/redis-cluster.js';
import { placeOf, tenantsOnDistinctPrimaries } from './cluster.js';

const RESTOCK = `mutation($productId: ID!, $quantity: Int!) { restockProduct(productId: $productId, quantity: $quantity) { id stock } }`;
const DEPOSIT = `mutation($accountId: ID!, $amountCents: SafeInt!) { depositFunds(accountId: $accountId, amountCents: $amountCents) { id balanceCents } }`;
const PROCESS = `mutation($input: ProcessOrderInput!) { processOrder(input: $input) { id state } }`;
const STATE = `query($id: ID!, $after: String) { product(id: "p") { stock } account(id: $id) { balanceCents orders(first: 100, after: $after) { items { id } nextCursor } } }`;
const ORDER_EVENTS = `subscription { orderEvents { eventId type orderId } }`;

let cluster: TestCluster;
const servers: TestServer[] = [];
beforeAll(async () => {
  cluster = await startTestCluster(3);
}, 60_000);
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await cluster?.stop();
});

async function serverOnOwnCluster(tenant: string, worker?: { enabled: boolean; tenants: null; tickMs: number }): Promise<TestServer> {
  const redisCluster = readConfig({ REDIS_CLUSTER_NODES: cluster.seeds() }).redisCluster;
  const server = await startTestServer({ tenant, config: { redisCluster, ...(worker ? { worker: { ...readConfig({}).worker, ...worker } } : {}) } });
  servers.push(server);
  return server;
}

async function librariesOn(port: number): Promise<string[]> {
  const node = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    const list = (await node.call('FUNCTION', 'LIST')) as unknown[][];
    return list.map((entry) => String(entry[entry.indexOf('library_name') + 1])).sort();
  } finally {
    node.disconnect();
  }
}

describe('a cluster whose topology changes', () => {
  it("orders keep working, in order and with every event once, while the tenant's slot moves onto a primary added meanwhile", { timeout: 60_000 }, async () => {
    const tenant = uniqueTenant('moving');
    const t = await serverOnOwnCluster(tenant);
    const sub = await t.subscribe(ORDER_EVENTS);
    const user = uid('u');
    await t.ok(RESTOCK, { productId: 'p', quantity: 10_000 });
    await t.ok(DEPOSIT, { accountId: user, amountCents: 10_000_000 });

    const added = await cluster.addPrimary();
    expect(await librariesOn(added.port)).toEqual([]); // nobody loaded anything there yet
    const { slot } = await placeOf(t.redis as unknown as Cluster, tenant);

    // orders one after the other, before, during and after the move
    const placed: string[] = [];
    let stopAt = Infinity; // 20 more orders once the slot has moved
    const placing = (async () => {
      for (let i = 0; placed.length < stopAt; i++) {
        if (i > 5000) throw new Error('the slot did not move');
        const orderId = `o${String(i).padStart(4, '0')}`;
        const order = await t.ok<{ processOrder: { id: string; state: string } }>(PROCESS, {
          input: { orderId, userId: user, productId: 'p', quantity: 1, unitPriceCents: 100 },
        });
        expect(order.processOrder).toEqual({ id: orderId, state: 'pending' });
        placed.push(orderId);
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const before = placed.length;
    await cluster.moveSlot(slot, added);
    const during = placed.length;
    stopAt = placed.length + 20;
    await placing;

    expect(before).toBeGreaterThan(0);
    expect(during).toBeGreaterThan(before); // orders went on while the keys moved
    expect((await cluster.ownerOf(slot)).port).toBe(added.port);
    // atomflow loaded its functions on the new primary by itself
    expect((await librariesOn(added.port)).filter((name) => name.startsWith('atomflow_')).length).toBeGreaterThan(0);

    type State = { product: { stock: number }; account: { balanceCents: number; orders: { items: { id: string }[]; nextCursor: string | null } } };
    const state = await t.ok<State>(STATE, { id: user });
    expect(state.product.stock).toBe(10_000 - placed.length);
    expect(state.account.balanceCents).toBe(10_000_000 - 100 * placed.length);
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
  });

  it('the scheduler worker applies due entries of tenants on every primary, with no WORKER_TENANTS', { timeout: 30_000 }, async () => {
    const host = await serverOnOwnCluster(uniqueTenant('worker'), { enabled: true, tenants: null, tickMs: 50 });
    const tenants = await tenantsOnDistinctPrimaries(host.redis as unknown as Cluster, 3, 'due');
    const engine = host.server.engine;
    const entries = await Promise.all(
      tenants.map(async (tenant) => {
        await engine.workflows.defineMachine(tenant, documentMachine('doc'));
        await engine.workflows.start(tenant, { id: 'w', machine: 'doc' });
        const entry = await engine.scheduler.schedule(tenant, { workflowId: 'w', to: 'review', runAt: new Date(Date.now() + 200) });
        return { tenant, id: entry.id };
      }),
    );
    for (const { tenant, id } of entries) {
      await expect.poll(async () => (await engine.scheduler.get(tenant, id))?.status, { timeout: 10_000 }).toBe('DONE');
      expect((await engine.workflows.get(tenant, 'w'))?.state).toBe('review');
    }
  });
});
