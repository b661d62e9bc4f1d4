/**
 * Authentication and authorization, over HTTP and WebSocket alike: every operation for every role
 * (allowed and refused, refused ones writing nothing), and tokens that must not get in (none,
 * malformed, forged, expired, `alg: none`, another key or algorithm, missing claims, wrong issuer or
 * audience), and a WebSocket closed with 4401 when its token expires.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { startTestServer, TEST_JWT_SECRET, testToken, uid, type TestServer } from './harness.js';
import { RawSocket, type OperationResult } from './ws-raw.js';
import type { Role } from '../../src/auth/tokens.js';
import { buildSchema } from 'graphql';
import { printGraphQLSchema } from '../../src/graphql/schema.js';
import { POLICY } from '../../src/auth/policy.js';

let t: TestServer;
const tokens: Record<Role, string> = {} as never;
const sockets: RawSocket[] = [];
/** alice and bob: accounts of the tenant, each with an order; `ticket-1` is a non-order workflow. */
const fx = {
  product: 'widget',
  alice: 'alice',
  bob: 'bob',
  aliceOrder: 'order-alice',
  bobOrder: 'order-bob',
  machine: 'ticket',
  ticket: 'ticket-1',
  saga: 'saga-1',
  entry: '',
};

async function ok(query: string, variables?: Record<string, unknown>) {
  const res = await t.gql(query, variables);
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return res.data!;
}

beforeAll(async () => {
  t = await startTestServer();
  tokens.admin = await t.token({ role: 'admin', sub: 'root' });
  tokens.service = await t.token({ role: 'service', sub: 'billing' });
  tokens.user = await t.token({ role: 'user', sub: fx.alice });
  await ok(`mutation { restockProduct(productId: "widget", quantity: 1000) { id } a: depositFunds(accountId: "alice", amountCents: 1000000) { id } b: depositFunds(accountId: "bob", amountCents: 1000000) { id } }`);
  for (const [orderId, userId] of [
    [fx.aliceOrder, fx.alice],
    [fx.bobOrder, fx.bob],
  ]) {
    await ok(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, {
      i: { orderId, userId, productId: fx.product, quantity: 1, unitPriceCents: 100 },
    });
  }
  await ok(`mutation { defineStateMachine(input: { name: "ticket", initialState: "open", states: ["open", "closed"], transitions: [{ from: "open", to: ["closed"] }] }) { name } }`);
  await ok(`mutation { startWorkflow(input: { id: "ticket-1", machine: "ticket" }) { id } }`);
  await ok(`mutation { executeSaga(input: { id: "saga-1", steps: [{ op: SADD, key: "tags", member: "x" }] }) { id } }`);
  fx.entry = (await ok(`mutation { scheduleTransition(input: { workflowId: "ticket-1", to: "closed", runAt: "2099-01-01T00:00:00Z" }) { id } }`)).scheduleTransition.id;
});
afterAll(async () => {
  sockets.forEach((s) => s.close());
  await t?.close();
});

type Transport = 'http' | 'ws';
const wsFor = new Map<Role, RawSocket>();

async function run(transport: Transport, role: Role, query: string, variables?: Record<string, unknown>): Promise<OperationResult> {
  if (transport === 'http') return t.gql(query, variables, { token: tokens[role] });
  let socket = wsFor.get(role);
  if (!socket) {
    const handshake = await RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${tokens[role]}` });
    expect(handshake.socket, JSON.stringify(handshake)).not.toBeNull();
    socket = handshake.socket!;
    sockets.push(socket);
    wsFor.set(role, socket);
  }
  return socket.run(query, variables);
}

interface Case {
  name: string;
  /** Fresh variables per call (mutations get new ids so each run can succeed). */
  op: () => { query: string; variables?: Record<string, unknown> };
  allowed: Role[];
}

const id = () => uid('x');
const CASES: Case[] = [
  // queries
  { name: 'account (own)', op: () => ({ query: `{ account(id: "alice") { id balanceCents orders(first: 5) { items { id } } } }` }), allowed: ['admin', 'service', 'user'] },
  { name: "account (another's)", op: () => ({ query: `{ account(id: "bob") { id balanceCents } }` }), allowed: ['admin', 'service'] },
  { name: 'order (own)', op: () => ({ query: `{ order(id: "order-alice") { id userId workflow { history { entries { to } } } } }` }), allowed: ['admin', 'service', 'user'] },
  { name: "order (another's)", op: () => ({ query: `{ order(id: "order-bob") { id userId } }` }), allowed: ['admin', 'service'] },
  { name: 'order (a workflow that is not an order)', op: () => ({ query: `{ order(id: "ticket-1") { id } }` }), allowed: ['admin', 'service'] },
  { name: 'product', op: () => ({ query: `{ product(id: "widget") { stock } }` }), allowed: ['admin', 'service'] },
  { name: 'stateMachine', op: () => ({ query: `{ stateMachine(name: "ticket") { name } }` }), allowed: ['admin', 'service'] },
  { name: 'stateMachines', op: () => ({ query: `{ stateMachines { name } }` }), allowed: ['admin', 'service'] },
  { name: 'workflow', op: () => ({ query: `{ workflow(id: "ticket-1") { id } }` }), allowed: ['admin', 'service'] },
  { name: 'workflows', op: () => ({ query: `{ workflows(first: 5) { items { id } } }` }), allowed: ['admin', 'service'] },
  { name: 'saga', op: () => ({ query: `{ saga(id: "saga-1") { status } }` }), allowed: ['admin', 'service'] },
  { name: 'dataHash', op: () => ({ query: `{ dataHash(key: "stock") { fields } }` }), allowed: ['admin', 'service'] },
  { name: 'dataSet', op: () => ({ query: `{ dataSet(key: "tags") { members } }` }), allowed: ['admin', 'service'] },
  { name: 'scheduledTransition', op: () => ({ query: `query($id: ID!) { scheduledTransition(id: $id) { status } }`, variables: { id: fx.entry } }), allowed: ['admin', 'service'] },
  { name: 'scheduledTransitions', op: () => ({ query: `{ scheduledTransitions(status: PENDING, first: 5) { items { id status } nextCursor } }` }), allowed: ['admin', 'service'] },
  // mutations
  {
    name: 'defineStateMachine',
    op: () => ({ query: `mutation { defineStateMachine(input: { name: "door", initialState: "open", states: ["open", "shut"], transitions: [{ from: "open", to: ["shut"] }] }) { version } }` }),
    allowed: ['admin'],
  },
  { name: 'startWorkflow', op: () => ({ query: `mutation($id: ID!) { startWorkflow(input: { id: $id, machine: "ticket" }) { id } }`, variables: { id: id() } }), allowed: ['admin', 'service'] },
  { name: 'restockProduct', op: () => ({ query: `mutation { restockProduct(productId: "widget", quantity: 1) { stock } }` }), allowed: ['admin', 'service'] },
  { name: 'depositFunds (own account)', op: () => ({ query: `mutation { depositFunds(accountId: "alice", amountCents: 1) { balanceCents } }` }), allowed: ['admin', 'service'] },
  {
    name: 'processOrder (own account)',
    op: () => ({ query: `mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, variables: { i: { orderId: id(), userId: 'alice', productId: 'widget', quantity: 1, unitPriceCents: 1 } } }),
    allowed: ['admin', 'service', 'user'],
  },
  {
    name: "processOrder (another's account)",
    op: () => ({ query: `mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, variables: { i: { orderId: id(), userId: 'bob', productId: 'widget', quantity: 1, unitPriceCents: 1 } } }),
    allowed: ['admin', 'service'],
  },
  { name: 'transitionWorkflow (a non-order workflow)', op: () => ({ query: `mutation { transitionWorkflow(input: { id: "ticket-1", to: "open", from: "closed" }) { id } }` }), allowed: [] },
  { name: "transitionWorkflow (cancel another's order)", op: () => ({ query: `mutation { transitionWorkflow(input: { id: "order-bob", to: "cancelled", from: "processing" }) { id } }` }), allowed: [] },
  { name: 'transitionWorkflow (move own order other than to cancelled)', op: () => ({ query: `mutation { transitionWorkflow(input: { id: "order-alice", to: "processing", from: "shipped" }) { id } }` }), allowed: [] },
  {
    name: 'executeSaga',
    op: () => ({ query: `mutation($id: ID!) { executeSaga(input: { id: $id, steps: [{ op: SADD, key: "tags", member: "y" }] }) { status } }`, variables: { id: id() } }),
    allowed: ['admin', 'service'],
  },
  {
    name: 'scheduleTransition',
    op: () => ({ query: `mutation { scheduleTransition(input: { workflowId: "ticket-1", to: "closed", runAt: "2099-01-01T00:00:00Z" }) { id } }` }),
    allowed: ['admin', 'service'],
  },
  { name: 'cancelScheduledTransition', op: () => ({ query: `mutation { cancelScheduledTransition(id: "no-such-entry") { id } }` }), allowed: [] },
];

const ROLES: Role[] = ['admin', 'service', 'user'];

describe.each(['http', 'ws'] as const)('every operation for every role over %s', (transport) => {
  for (const c of CASES) {
    for (const role of ROLES) {
      const expected = c.allowed.includes(role) ? 'allowed' : 'FORBIDDEN';
      it(`${c.name}: ${role} -> ${expected}`, async () => {
        const { query, variables } = c.op();
        if (expected === 'allowed') {
          const res = await run(transport, role, query, variables);
          expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
          expect(Object.values(res.data ?? {})[0]).not.toBeUndefined();
          return;
        }
        const before = await t.snapshot();
        const res = await run(transport, role, query, variables);
        const codes = (res.errors ?? []).map((e) => e.extensions?.code);
        if (c.allowed.length === 0 && role !== 'user') {
          // the guard lets staff through; these calls then fail on their own merits, not FORBIDDEN
          expect(codes.length).toBeGreaterThan(0);
          expect(codes).not.toContain('FORBIDDEN');
        } else {
          expect(codes).toEqual(['FORBIDDEN']);
          expect(Object.values(res.data ?? {}).every((v) => v === null)).toBe(true);
        }
        expect(await t.snapshot()).toEqual(before);
      });
    }
  }
});

describe('the schema says which roles each operation needs', () => {
  it('every root field ends its description with its rule from the one policy table', async () => {
    const schema = buildSchema(await printGraphQLSchema());
    let fields = 0;
    for (const type of [schema.getQueryType()!, schema.getMutationType()!, schema.getSubscriptionType()!]) {
      for (const field of Object.values(type.getFields())) {
        const rule = POLICY[`${type.name}.${field.name}`];
        expect(rule, `${type.name}.${field.name} has a rule`).toBeDefined();
        const line = field.description!.split('\n').at(-1)!;
        expect(line).toMatch(/^Roles: admin(, service)?(; user: .+)?\.$/);
        expect(line.includes('service')).toBe(rule!.roles.includes('service'));
        expect(line.includes('user:')).toBe(rule!.roles.includes('user'));
        fields++;
      }
    }
    expect(fields).toBe(CASES.map((c) => c.name.split(' ')[0]).filter((n, i, all) => all.indexOf(n) === i).length + 2);
  });
});

describe('what a user may do with its own orders', () => {
  it('cancels its own order (over HTTP), and the refund shows in its own account', async () => {
    const orderId = uid('mine');
    await ok(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, { i: { orderId, userId: 'alice', productId: 'widget', quantity: 1, unitPriceCents: 250 } });
    const balance = async () => (await t.gql(`{ account(id: "alice") { balanceCents } }`, undefined, { token: tokens.user })).data!.account.balanceCents;
    const before = await balance();
    const res = await t.gql(`mutation($id: ID!) { transitionWorkflow(input: { id: $id, to: "cancelled" }) { state } }`, { id: orderId }, { token: tokens.user });
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({ transitionWorkflow: { state: 'cancelled' } });
    expect(await balance()).toBe(before + 250);
  });

  it('cancels its own order over WebSocket', async () => {
    const orderId = uid('mine');
    await ok(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, { i: { orderId, userId: 'alice', productId: 'widget', quantity: 1, unitPriceCents: 1 } });
    const res = await run('ws', 'user', `mutation($id: ID!) { transitionWorkflow(input: { id: $id, to: "cancelled" }) { state } }`, { id: orderId });
    expect(res).toEqual({ data: { transitionWorkflow: { state: 'cancelled' } } });
  });

  it("may not cancel another account's pending order, which stays as it was", async () => {
    const orderId = uid('theirs');
    await ok(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, { i: { orderId, userId: 'bob', productId: 'widget', quantity: 1, unitPriceCents: 1 } });
    const before = await t.snapshot();
    for (const transport of ['http', 'ws'] as const) {
      const res = await run(transport, 'user', `mutation($id: ID!) { transitionWorkflow(input: { id: $id, to: "cancelled" }) { state } }`, { id: orderId });
      expect(res.errors?.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    }
    expect(await t.snapshot()).toEqual(before);
  });
});

describe('subscriptions for every role', () => {
  const ordersChannel = () => t.server.engine.context.keys(t.tenant).ordersChannel();
  const workflowChannel = () => t.server.engine.context.keys(t.tenant).workflowChannel();

  async function connect(role: Role): Promise<RawSocket> {
    const { socket } = await RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${tokens[role]}` });
    sockets.push(socket!);
    return socket!;
  }

  it('orderEvents: a user receives its own account\'s events only, also when it omits userId', async () => {
    const socket = await connect('user');
    const before = t.server.listenerCount(ordersChannel());
    const own = socket.subscribe(`subscription { orderEvents { orderId userId type } }`);
    const named = socket.subscribe(`subscription { orderEvents(userId: "alice") { orderId userId type } }`);
    await expect.poll(() => t.server.listenerCount(ordersChannel())).toBe(before + 2);
    const bobOrder = uid('bob');
    const aliceOrder = uid('alice');
    for (const [orderId, userId] of [
      [bobOrder, 'bob'],
      [aliceOrder, 'alice'],
    ]) {
      await ok(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, { i: { orderId, userId, productId: 'widget', quantity: 1, unitPriceCents: 1 } });
    }
    await expect.poll(() => own.events.length + named.events.length).toBe(2);
    // bob's event went out first: had it passed the filter it would be here
    expect(own.events).toEqual([{ orderEvents: { orderId: aliceOrder, userId: 'alice', type: 'ORDER_CONFIRMED' } }]);
    expect(named.events).toEqual(own.events);
    expect([own.errors, named.errors]).toEqual([[], []]);
  });

  it("orderEvents: a user asking for another account's events is FORBIDDEN", async () => {
    const socket = await connect('user');
    const sub = socket.subscribe(`subscription { orderEvents(userId: "bob") { orderId } }`);
    await sub.done;
    expect(sub.errors.flat().map((e: any) => e.extensions?.code)).toEqual(['FORBIDDEN']);
  });

  it.each(['admin', 'service'] as const)('orderEvents and workflowEvents: %s receives every account\'s events', async (role) => {
    const socket = await connect(role);
    const orders = t.server.listenerCount(ordersChannel());
    const workflows = t.server.listenerCount(workflowChannel());
    const orderSub = socket.subscribe(`subscription { orderEvents { orderId userId } }`);
    const workflowSub = socket.subscribe(`subscription { workflowEvents(machine: "ticket") { workflowId } }`);
    await expect.poll(() => [t.server.listenerCount(ordersChannel()), t.server.listenerCount(workflowChannel())]).toEqual([orders + 1, workflows + 1]);
    const orderId = uid('bob');
    const workflowId = uid('tk');
    await ok(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, { i: { orderId, userId: 'bob', productId: 'widget', quantity: 1, unitPriceCents: 1 } });
    await ok(`mutation($id: ID!) { startWorkflow(input: { id: $id, machine: "ticket" }) { id } }`, { id: workflowId });
    await expect.poll(() => [orderSub.events, workflowSub.events]).toEqual([
      [{ orderEvents: { orderId, userId: 'bob' } }],
      [{ workflowEvents: { workflowId } }],
    ]);
  });

  it('workflowEvents: a user is FORBIDDEN', async () => {
    const socket = await connect('user');
    const sub = socket.subscribe(`subscription { workflowEvents { workflowId } }`);
    await sub.done;
    expect(sub.errors.flat().map((e: any) => e.extensions?.code)).toEqual(['FORBIDDEN']);
  });
});

describe('tokens that do not get in', () => {
  const QUERY = `{ stateMachines { name } }`;
  const WRITE = `mutation { depositFunds(accountId: "alice", amountCents: 1) { balanceCents } }`;
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const exp = () => Math.floor(Date.now() / 1000) + 3600;

  async function bad(): Promise<Record<string, string | undefined>> {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sign = (claims: Record<string, unknown>, secret = TEST_JWT_SECRET) => {
      let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' });
      if (!('exp' in claims)) jwt = jwt.setExpirationTime(exp());
      return jwt.sign(new TextEncoder().encode(secret));
    };
    const admin = await testToken({ tenant: t.tenant });
    const [header, payload] = admin.split('.');
    return {
      none: undefined,
      empty: '',
      'not Bearer': `Basic ${Buffer.from('admin:admin').toString('base64')}`,
      'Bearer and garbage': 'Bearer not.a.token',
      'forged (another secret)': `Bearer ${await testToken({ tenant: t.tenant }, 'another-secret-of-at-least-32-bytes-0000000')}`,
      'tampered payload': `Bearer ${header}.${b64({ sub: 'root', tenant: 'other', role: 'admin', exp: exp() })}.${admin.split('.')[2]}`,
      expired: `Bearer ${await testToken({ tenant: t.tenant, ttlSeconds: -60 })}`,
      'alg none': `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      'ES256 (another key and algorithm)': `Bearer ${await new SignJWT({ tenant: t.tenant, role: 'admin' }).setProtectedHeader({ alg: 'ES256' }).setSubject('root').setExpirationTime(exp()).sign(privateKey)}`,
      'RS256 (another key and algorithm)': `Bearer ${await new SignJWT({ tenant: t.tenant, role: 'admin' }).setProtectedHeader({ alg: 'RS256' }).setSubject('root').setExpirationTime(exp()).sign(rsa.privateKey)}`,
      'no exp': `Bearer ${await new SignJWT({ sub: 'root', tenant: t.tenant, role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(TEST_JWT_SECRET))}`,
      'no sub': `Bearer ${await sign({ tenant: t.tenant, role: 'admin' })}`,
      'no tenant': `Bearer ${await sign({ sub: 'root', role: 'admin' })}`,
      'bad tenant': `Bearer ${await sign({ sub: 'root', tenant: 'a}b', role: 'admin' })}`,
      'unknown role': `Bearer ${await sign({ sub: 'root', tenant: t.tenant, role: 'superuser' })}`,
    };
  }

  it('over HTTP: UNAUTHENTICATED, 401 for application/graphql-response+json, and nothing runs', async () => {
    const cases = await bad();
    const before = await t.snapshot();
    for (const [name, authorization] of Object.entries(cases)) {
      for (const query of [QUERY, WRITE]) {
        const res = await fetch(t.server.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/graphql-response+json',
            ...(authorization === undefined ? {} : { authorization }),
          },
          body: JSON.stringify({ query }),
        });
        expect(res.status, name).toBe(401);
        expect(res.headers.get('content-type'), name).toMatch(/^application\/graphql-response\+json/);
        const body = (await res.json()) as { data?: unknown; errors: { message: string; extensions: { code: string } }[] };
        expect(body.errors.map((e) => e.extensions.code), name).toEqual(['UNAUTHENTICATED']);
        expect(body.data, name).toBeUndefined();
        // the message never echoes the token
        expect(authorization && authorization.length > 20 ? body.errors[0]!.message.includes(authorization.slice(7, 40)) : false).toBe(false);
      }
    }
    expect(await t.snapshot()).toEqual(before);
  });

  it('over WebSocket: the connection is closed with 4401 and acknowledged for none of them', async () => {
    const cases = await bad();
    for (const [name, authorization] of Object.entries(cases)) {
      const handshake = await RawSocket.open(t.server.wsUrl, { authorization });
      expect(handshake.socket, name).toBeNull();
      expect(handshake.closeCode, name).toBe(4401);
    }
    // connectionParams without a string authorization carry no token either
    expect((await RawSocket.open(t.server.wsUrl, { payload: { authorization: 42 } })).closeCode).toBe(4401);
    expect((await RawSocket.open(t.server.wsUrl, { payload: { token: await testToken({ tenant: t.tenant }) } })).closeCode).toBe(4401);
  });

  it('a subscribe message before an acknowledged connection_init is refused with 4401 (graphql-ws)', async () => {
    const ws = new (await import('ws')).default(t.server.wsUrl, 'graphql-transport-ws');
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: QUERY } }));
    expect(await closed).toBe(4401);
  });

  it('a valid token of the same secret still gets in (the cases above fail for their own reason)', async () => {
    const handshake = await RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${await testToken({ tenant: t.tenant })}` });
    expect(handshake.socket).not.toBeNull();
    handshake.socket!.close();
    expect((await t.gql(QUERY)).errors).toBeUndefined();
  });
});

describe('a WebSocket whose token expires', () => {
  it('is closed with 4401 at expiry, ending its subscriptions; no operation runs after', async () => {
    const token = await testToken({ tenant: t.tenant, ttlSeconds: 2 });
    const { socket } = await RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${token}` });
    expect(socket).not.toBeNull();
    sockets.push(socket!);
    const channel = t.server.engine.context.keys(t.tenant).workflowChannel();
    const before = t.server.listenerCount(channel);
    const sub = socket!.subscribe(`subscription { workflowEvents(machine: "ticket") { workflowId } }`);
    await expect.poll(() => t.server.listenerCount(channel)).toBe(before + 1);
    expect((await socket!.run(`{ stateMachines { name } }`)).errors).toBeUndefined();
    const started = Date.now();
    const { code } = await socket!.closed;
    expect(code).toBe(4401);
    // exp has one-second resolution: closed when the token ran out, not before
    expect(Date.now()).toBeGreaterThanOrEqual(Number(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp) * 1000 - 5);
    expect(Date.now() - started).toBeLessThan(4000);
    await sub.done;
    await expect.poll(() => t.server.listenerCount(channel)).toBe(before);
  });

  it('an expired token over HTTP is UNAUTHENTICATED and writes nothing', async () => {
    const before = await t.snapshot();
    const res = await t.gql(`mutation { depositFunds(accountId: "alice", amountCents: 5) { balanceCents } }`, undefined, {
      token: await testToken({ tenant: t.tenant, ttlSeconds: -1 }),
    });
    expect(res.status).toBe(401);
    expect(res.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    expect(await t.snapshot()).toEqual(before);
  });
});
