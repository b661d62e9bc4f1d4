/**
 * Several server instances on the loopback cluster of the run: a subscription on one sees what the
 * others do, orders of tenants on different primaries run at once with exact stock and money, and
 * the relay fills the gap when its connection to the primary owning a channel is killed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Redis, type Cluster } from 'ioredis';
import { inject } from 'vitest';
import { postGraphQL, startTestServer, testToken, type TestServer, uid } from '../api/harness.js';
import { uniqueTenant } from '../setup/helpers.js';
import { placeOf, tenantsOnDistinctPrimaries } from './cluster.js';

const RESTOCK = `mutation($productId: ID!, $quantity: Int!) { restockProduct(productId: $productId, quantity: $quantity) { id stock } }`;
const DEPOSIT = `mutation($accountId: ID!, $amountCents: SafeInt!) { depositFunds(accountId: $accountId, amountCents: $amountCents) { id balanceCents } }`;
const PROCESS = `mutation($input: ProcessOrderInput!) { processOrder(input: $input) { id state totalCents } }`;
const STOCK_AND_BALANCE = `query($p: ID!, $u: ID!) { product(id: $p) { stock } account(id: $u) { balanceCents } }`;
const ORDER_EVENTS = `subscription { orderEvents { eventId type orderId } }`;
const WF_EVENTS = `subscription { workflowEvents { eventId workflowId to version } }`;

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function instances(count: number, tenant: string): Promise<TestServer[]> {
  const started = await Promise.all(Array.from({ length: count }, () => startTestServer({ tenant })));
  servers.push(...started);
  return started;
}

/** A plain connection to one node of the cluster (host:port). */
function nodeConnection(address: string): Redis {
  const [host, port] = address.split(':');
  const redis = new Redis({ host, port: Number(port), maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

describe('three server instances on a Redis Cluster', () => {
  it('a subscription on one instance sees the mutations made through the other two, once each and in order', async () => {
    expect(inject('redisClusterNodes')).toBeTruthy();
    const [a, b, c] = await instances(3, uniqueTenant('three'));
    const orders = await a!.subscribe(ORDER_EVENTS);
    const workflows = await a!.subscribe(WF_EVENTS);

    const [user, product] = [uid('u'), uid('p')];
    await b!.ok(RESTOCK, { productId: product, quantity: 10 });
    await c!.ok(DEPOSIT, { accountId: user, amountCents: 10_000 });
    const placed: string[] = [];
    for (let i = 0; i < 6; i++) {
      const through = i % 2 === 0 ? b! : c!;
      const orderId = uid('o');
      await through.ok(PROCESS, { input: { orderId, userId: user, productId: product, quantity: 1, unitPriceCents: 100 } });
      placed.push(orderId);
    }
    await c!.ok(`mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name } }`, {
      input: { name: 'door', initialState: 'open', states: ['open', 'shut'], transitions: [{ from: 'open', to: ['shut'] }] },
    });
    await b!.ok(`mutation { startWorkflow(input: {id: "front", machine: "door"}) { id } }`);
    await c!.ok(`mutation { transitionWorkflow(input: {id: "front", to: "shut"}) { id } }`);

    const orderEvents = (await orders.waitFor(6)).map((e) => e.orderEvents);
    expect(orderEvents.map((e) => e.orderId)).toEqual(placed);
    expect(new Set(orderEvents.map((e) => e.eventId)).size).toBe(6);
    // workflow events: the 6 orders' workflows, then the door
    const door = (await workflows.waitFor(8)).map((e) => e.workflowEvents).filter((e) => e.workflowId === 'front');
    expect(door.map((e) => [e.to, e.version])).toEqual([
      ['open', 1],
      ['shut', 2],
    ]);
  });

  it('orders of three tenants on three primaries run at once through three instances, with exact stock and money', async () => {
    const [first] = await instances(1, uniqueTenant('spread'));
    const cluster = first!.redis as unknown as Cluster;
    const tenants = await tenantsOnDistinctPrimaries(cluster, 3);
    const through = await instances(2, tenants[0]!);
    const fleet = [first!, ...through];
    const price = 250;
    const perTenant = 60;
    const setups = await Promise.all(
      tenants.map(async (tenant, i) => {
        const token = await testToken({ tenant });
        const [user, product] = [uid('u'), uid('p')];
        const stock = 20 + 5 * i; // 20, 25, 30 units
        const funds = 40 * price; // enough for 40 orders: stock runs out first
        expect((await postGraphQL(fleet[i]!.server.url, RESTOCK, { productId: product, quantity: stock }, token)).errors).toBeUndefined();
        expect((await postGraphQL(fleet[i]!.server.url, DEPOSIT, { accountId: user, amountCents: funds }, token)).errors).toBeUndefined();
        return { tenant, token, user, product, stock, funds };
      }),
    );

    // every order of every tenant at once, spread over the three instances
    const results = await Promise.all(
      setups.flatMap((s) =>
        Array.from({ length: perTenant }, (_, n) =>
          postGraphQL<{ processOrder: { state: string } }>(
            fleet[n % 3]!.server.url,
            PROCESS,
            { input: { orderId: uid('o'), userId: s.user, productId: s.product, quantity: 1, unitPriceCents: price } },
            s.token,
          ).then((res) => ({ tenant: s.tenant, res })),
        ),
      ),
    );
    for (const [i, s] of setups.entries()) {
      const mine = results.filter((r) => r.tenant === s.tenant).map((r) => r.res);
      const confirmed = mine.filter((r) => r.data?.processOrder?.state === 'pending').length;
      const outOfStock = mine.filter((r) => r.errors?.[0]?.extensions?.code === 'OUT_OF_STOCK').length;
      expect({ tenant: i, confirmed, outOfStock }).toEqual({ tenant: i, confirmed: s.stock, outOfStock: perTenant - s.stock });
      const after = await postGraphQL<{ product: { stock: number }; account: { balanceCents: number } }>(
        fleet[(i + 1) % 3]!.server.url,
        STOCK_AND_BALANCE,
        { p: s.product, u: s.user },
        s.token,
      );
      expect(after.data).toEqual({ product: { stock: 0 }, account: { balanceCents: s.funds - s.stock * price } });
      // and the tenant's data is where its slot is: on its own primary
      const { owner } = await placeOf(cluster, s.tenant);
      const node = nodeConnection(owner);
      try {
        expect(await node.exists(first!.server.engine.context.keys(s.tenant).productStock(s.product))).toBe(1);
      } finally {
        node.disconnect();
      }
    }
    expect(new Set(await Promise.all(tenants.map(async (t) => (await placeOf(cluster, t)).owner))).size).toBe(3);
  });

  it('the relay fills the gap when its connection to the primary owning the channel is killed mid-stream', async () => {
    const [own] = await instances(1, uniqueTenant('kill'));
    const sub = await own!.subscribe(ORDER_EVENTS);
    const channel = own!.server.engine.context.keys(own!.tenant).ordersChannel();
    const link = own!.server.eventRelay.subscriberFor(channel)!;
    let reconnects = 0;
    link.on('reconnecting', () => reconnects++);
    const localPort = (link as unknown as { stream: { localPort: number } }).stream.localPort;
    const owner = nodeConnection(`${link.options.host}:${link.options.port}`);
    const [user, product] = [uid('u'), uid('p')];
    await own!.ok(RESTOCK, { productId: product, quantity: 100 });
    await own!.ok(DEPOSIT, { accountId: user, amountCents: 100_000 });
    const placed: string[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        if (i === 15) expect(await owner.client('KILL', 'ADDR', `127.0.0.1:${localPort}`)).toBe(1);
        const orderId = uid('o');
        await own!.ok(PROCESS, { input: { orderId, userId: user, productId: product, quantity: 1, unitPriceCents: 10 } });
        placed.push(orderId);
      }
    } finally {
      owner.disconnect();
    }
    const events = (await sub.waitFor(40, 10_000)).map((e) => e.orderEvents);
    expect(events.map((e) => e.orderId)).toEqual(placed);
    expect(reconnects).toBeGreaterThan(0);
  });
});
