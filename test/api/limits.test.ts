/**
 * The bound on every request, over HTTP and WebSocket alike: the attacks of issue 7 are refused in
 * bounded time, with small answers, before anything runs, while the server keeps serving others.
 * Cost (list sizes from `first`), depth, aliases, root and mutation fields, WebSocket message size,
 * connections and operations per socket, errors that echo at most 200 characters, data reads paged,
 * the rate limit per principal, and introspection by environment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, TEST_JWT_SECRET, testConfig, type TestServer } from './harness.js';
import { RawSocket } from './ws-raw.js';
import { readConfig, type Config } from '../../src/config.js';

let t: TestServer;
const servers: TestServer[] = [];
const sockets: RawSocket[] = [];

async function server(overrides: Partial<Config['limits']> = {}, config: Partial<Config> = {}): Promise<TestServer> {
  const s = await startTestServer({ config: { ...config, limits: { ...testConfig().limits, ...overrides } } });
  servers.push(s);
  return s;
}

async function ws(s: TestServer, token?: string): Promise<RawSocket> {
  const { socket } = await RawSocket.open(s.server.wsUrl, { authorization: `Bearer ${token ?? (await s.token())}` });
  expect(socket).not.toBeNull();
  sockets.push(socket!);
  return socket!;
}

beforeAll(async () => {
  t = await startTestServer();
  servers.push(t);
  const res = await t.gql(`mutation {
    restockProduct(productId: "widget", quantity: 100) { id }
    depositFunds(accountId: "alice", amountCents: 100000) { id }
    processOrder(input: { orderId: "order-1", userId: "alice", productId: "widget", quantity: 1, unitPriceCents: 10 }) { id }
  }`);
  expect(res.errors).toBeUndefined();
});
afterAll(async () => {
  sockets.forEach((s) => s.close());
  for (const s of servers) await s.close();
});

const NESTED = `account(id: "alice") { orders(first: 100) { items { workflow { history(first: 100) { entries { from to at version metadata } } } } } }`;
const aliases = (n: number, field: string) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ')} }`;
const codes = (res: { errors?: { extensions?: { code?: string } }[] }) => (res.errors ?? []).map((e) => e.extensions?.code);

/** Runs `attack` while a normal client keeps asking; the normal client is answered throughout. */
async function whileServingOthers<T>(s: TestServer, attack: () => Promise<T>): Promise<{ result: T; ms: number; othersServed: number }> {
  let stop = false;
  let othersServed = 0;
  const other = (async () => {
    while (!stop) {
      const res = await s.gql(`{ product(id: "widget") { stock } }`);
      expect(res.errors).toBeUndefined();
      othersServed++;
    }
  })();
  const started = Date.now();
  const result = await attack();
  const ms = Date.now() - started;
  stop = true;
  await other;
  return { result, ms, othersServed };
}

describe('cost, depth, aliases and root fields', () => {
  it('refuses 1,000 aliases of a nested read (the 124 KB attack) at once, with a small answer', async () => {
    const query = aliases(1000, NESTED);
    expect(query.length).toBeGreaterThan(120_000);
    const { result, ms, othersServed } = await whileServingOthers(t, () => Promise.all(Array.from({ length: 4 }, () => t.gql(query))));
    for (const res of result) {
      expect(res.status).toBe(400);
      expect(codes(res)).toEqual(['QUERY_TOO_COMPLEX']);
      expect(res.data).toBeUndefined();
      expect(JSON.stringify(res).length).toBeLessThan(1000);
    }
    expect(ms).toBeLessThan(3000);
    expect(othersServed).toBeGreaterThan(0);
  });

  it('a large document within the token limit is refused by its shape before it is validated', async () => {
    // 440 nested aliases: just under 20,000 tokens; validating it would take ~8 µs a token
    const query = aliases(440, NESTED);
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 10 }, () => t.gql(query)));
    for (const res of results) expect(res.errors?.[0]?.message).toMatch(/^440 root fields exceed the limit of 20/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('refuses 200 aliases (the 317 MB response) and names the limit', async () => {
    const res = await t.gql(aliases(200, `account(id: "alice") { orders(first: 100) { items { workflow { history(first: 100) { entries { metadata } } } } } }`));
    expect(codes(res)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(res.errors![0]!.message).toMatch(/^200 (root fields|aliases) exceed the limit of 20/);
  });

  it('counts list sizes from `first`: one nested read without aliases is refused with its cost and the limit', async () => {
    const res = await t.gql(`{ ${NESTED} }`);
    expect(codes(res)).toEqual(['QUERY_TOO_COMPLEX']);
    const { message, extensions } = res.errors![0]!;
    expect(message).toMatch(/^query cost \d+ exceeds the limit of 5000/);
    expect(extensions).toEqual({ code: 'QUERY_TOO_COMPLEX', cost: Number(/cost (\d+)/.exec(message)![1]), limit: 5000 });
    // account 1 + orders (1 + 100 x (items 1 + workflow 1 + history (1 + 100 x entries 1))): as the README says
    expect(extensions!.cost).toBe(10_302);
    // the same shape with small pages is fine
    const small = await t.gql(`{ account(id: "alice") { orders(first: 10) { items { workflow { history(first: 10) { entries { from to at version metadata } } } } } } }`);
    expect(small.errors).toBeUndefined();
    expect(small.data!.account.orders.items).toHaveLength(1);
  });

  it('takes `first` from variables too', async () => {
    const query = `query($n: Int) { account(id: "alice") { orders(first: $n) { items { workflow { history(first: $n) { entries { to } } } } } } }`;
    expect(codes(await t.gql(query, { n: 100 }))).toEqual(['QUERY_TOO_COMPLEX']);
    expect((await t.gql(query, { n: 5 })).errors).toBeUndefined();
  });

  it('a document that passed is checked again when a variable that sets its cost changes (HTTP and WebSocket)', async () => {
    // passes are remembered per document, so the order matters here: small values first, then large
    const paged = `query($n: Int) { account(id: "alice") { orders(first: $n) { items { workflow { history(first: $n) { entries { to } } } } } } }`;
    const skipped = `query($deep: Boolean!) { account(id: "alice") { id orders(first: 100) @include(if: $deep) { items { workflow { history(first: 100) { entries { to } } } } } } }`;
    const socket = await ws(t);
    for (const run of [(q: string, v: Record<string, unknown>) => t.gql(q, v), (q: string, v: Record<string, unknown>) => socket.run(q, v)]) {
      expect((await run(paged, { n: 5 })).errors).toBeUndefined();
      expect(codes(await run(paged, { n: 100 }))).toEqual(['QUERY_TOO_COMPLEX']);
      expect((await run(paged, { n: 5 })).errors).toBeUndefined();
      expect((await run(skipped, { deep: false })).errors).toBeUndefined();
      expect(codes(await run(skipped, { deep: true }))).toEqual(['QUERY_TOO_COMPLEX']);
    }
  });

  it('refuses too deep, too many aliases and too many root fields, the same over HTTP and WebSocket', async () => {
    const s = await server({ maxDepth: 3, maxAliases: 2, maxRootFields: 3 });
    const socket = await ws(s);
    const cases: [string, RegExp][] = [
      [`{ order(id: "x") { workflow { history { entries { to } } } } }`, /query depth 5 exceeds the limit of 3/],
      [`{ a: product(id: "x") { id } b: product(id: "y") { id } c: product(id: "z") { id } }`, /3 aliases exceed the limit of 2/],
      [`{ product(id: "x") { id } account(id: "y") { id } order(id: "z") { id } saga(id: "w") { id } }`, /4 root fields exceed the limit of 3/],
      // fragments count as what they expand to
      [`{ ...F } fragment F on Query { product(id: "x") { id } account(id: "y") { id } order(id: "z") { id } saga(id: "w") { id } }`, /4 root fields/],
    ];
    for (const [query, message] of cases) {
      for (const res of [await s.gql(query), await socket.run(query)]) {
        expect(codes(res), query).toEqual(['QUERY_TOO_COMPLEX']);
        expect(res.errors![0]!.message).toMatch(message);
      }
    }
    // within the limits: answered
    expect((await socket.run(`{ a: product(id: "x") { id } b: product(id: "y") { id } order(id: "z") { workflow { id } } }`)).errors).toBeUndefined();
    // introspection is not counted against depth (the playground's query is deep)
    expect((await s.gql(`{ __schema { types { fields { type { ofType { ofType { name } } } } } } }`)).errors).toBeUndefined();
  });
});

describe('mutation fields', () => {
  const deposits = (n: number) => `mutation { ${Array.from({ length: n }, (_, i) => `d${i}: depositFunds(accountId: "bob", amountCents: 1) { balanceCents }`).join(' ')} }`;

  it('refuses 5,000 aliased depositFunds before any runs', async () => {
    const before = await t.snapshot();
    const { result: res, ms } = await whileServingOthers(t, () => t.gql(deposits(5000)));
    expect(codes(res)).toEqual(['QUERY_TOO_COMPLEX']);
    // 5,000 fields are more tokens than a document may have: refused while parsing
    expect(res.errors![0]!.message).toBe('the document has more than 20000 tokens');
    expect(ms).toBeLessThan(3000);
    const fewer = await t.gql(deposits(500));
    expect(codes(fewer)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(fewer.errors![0]!.message).toBe('500 mutation fields exceed the limit of 10 per operation (MAX_MUTATION_FIELDS)');
    expect(await t.snapshot()).toEqual(before);
  });

  it('runs 10, refuses 11 (HTTP and WebSocket)', async () => {
    const socket = await ws(t);
    const before = await t.snapshot();
    expect(codes(await t.gql(deposits(11)))).toEqual(['QUERY_TOO_COMPLEX']);
    expect(codes(await socket.run(deposits(11)))).toEqual(['QUERY_TOO_COMPLEX']);
    expect(await t.snapshot()).toEqual(before);
    const res = await t.gql(deposits(10));
    expect(res.errors).toBeUndefined();
    expect(Object.keys(res.data!)).toHaveLength(10);
  });

  it('one failing mutation of several nulls only its own field: the client sees which committed', async () => {
    const res = await t.gql(`mutation {
      ok: depositFunds(accountId: "carol", amountCents: 500) { id balanceCents }
      bad: depositFunds(accountId: "carol", amountCents: -1) { id balanceCents }
      again: depositFunds(accountId: "carol", amountCents: 1) { id balanceCents }
    }`);
    expect(res.data).toEqual({ ok: { id: 'carol', balanceCents: 500 }, bad: null, again: { id: 'carol', balanceCents: 501 } });
    expect(res.errors?.map((e) => [e.path, e.extensions?.code])).toEqual([[['bad'], 'BAD_USER_INPUT']]);
  });
});

describe('WebSocket bounds', () => {
  it('closes a socket that sends a message over 1 MB (1009), and keeps serving others', async () => {
    const socket = await ws(t);
    const other = await ws(t);
    socket.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: `{ product(id: "${'x'.repeat(1024 * 1024)}") { id } }` } }));
    expect((await socket.closed).code).toBe(1009);
    expect(await other.run(`{ product(id: "widget") { stock } }`)).toEqual({ data: { product: { stock: 99 } } });
  });

  it('refuses more than WS_MAX_CONNECTIONS sockets with 503, and takes a new one when one closes', async () => {
    const s = await server({ wsMaxConnections: 2 });
    const first = await ws(s);
    await ws(s);
    const refused = await RawSocket.open(s.server.wsUrl, { authorization: `Bearer ${await s.token()}` });
    expect(refused.httpStatus).toBe(503);
    first.close();
    await first.closed;
    await expect.poll(async () => {
      const again = await RawSocket.open(s.server.wsUrl, { authorization: `Bearer ${await s.token()}` });
      again.socket?.close();
      return again.socket !== null;
    }).toBe(true);
    // HTTP is not affected
    expect((await s.gql(`{ stateMachines { name } }`)).errors).toBeUndefined();
  });

  it('refuses more than WS_MAX_SUBSCRIPTIONS operations on one socket; the others go on', async () => {
    const s = await server({ wsMaxSubscriptions: 2 });
    const socket = await ws(s);
    const channel = s.server.engine.context.keys(s.tenant).workflowChannel();
    const subs = [socket.subscribe(`subscription { workflowEvents { workflowId } }`), socket.subscribe(`subscription { workflowEvents { workflowId } }`)];
    await expect.poll(() => s.server.listenerCount(channel)).toBe(2);
    const third = socket.subscribe(`subscription { workflowEvents { workflowId } }`);
    await third.done;
    expect(third.errors.flat().map((e: any) => [e.extensions?.code, e.message])).toEqual([
      ['QUERY_TOO_COMPLEX', 'at most 2 operations per connection (WS_MAX_SUBSCRIPTIONS)'],
    ]);
    await s.gql(`mutation { defineStateMachine(input: { name: "m", initialState: "a", states: ["a"], transitions: [] }) { name } }`);
    await s.gql(`mutation { startWorkflow(input: { id: "w1", machine: "m" }) { id } }`);
    await expect.poll(() => subs.map((x) => x.events)).toEqual([[{ workflowEvents: { workflowId: 'w1' } }], [{ workflowEvents: { workflowId: 'w1' } }]]);
    // one completes: there is room again
    socket.complete(subs[0]!.id);
    await expect.poll(() => s.server.listenerCount(channel)).toBe(1);
    socket.subscribe(`subscription { workflowEvents { workflowId } }`);
    await expect.poll(() => s.server.listenerCount(channel)).toBe(2);
  });
});

describe('errors echo at most 200 characters of a value', () => {
  it('a 900 KB string in an Int variable', async () => {
    const huge = '9'.repeat(100) + 'x'.repeat(900_000);
    const query = `query($n: Int) { account(id: "alice") { orders(first: $n) { items { id } } } }`;
    const socket = await ws(t);
    for (const res of [await t.gql(query, { n: huge }), await socket.run(query, { n: huge })]) {
      expect(res.errors!.length).toBeGreaterThan(0);
      for (const error of res.errors!) expect(error.message.length).toBeLessThanOrEqual(200);
      expect(JSON.stringify(res).length).toBeLessThan(2000);
    }
  });

  it('a long value in an inline literal and in an input object', async () => {
    const long = 'y'.repeat(50_000);
    const res = await t.gql(`mutation { depositFunds(accountId: "alice", amountCents: "${long}") { id } }`);
    expect(res.errors![0]!.message.length).toBeLessThanOrEqual(200);
    const res2 = await t.gql(`mutation($i: ProcessOrderInput!) { processOrder(input: $i) { id } }`, { i: { orderId: long, userId: long, productId: 'p', quantity: long, unitPriceCents: 1 } });
    expect(JSON.stringify(res2).length).toBeLessThan(2000);
  });
});

describe('data reads are paged', () => {
  it('dataSet on a 217,600-member set: 10 aliased pages answer quickly and /readyz stays ready', async () => {
    const key = t.server.engine.context.keys(t.tenant).sagaData('big');
    const members = Array.from({ length: 217_600 }, (_, i) => `member-${i}`);
    for (let i = 0; i < members.length; i += 10_000) await t.redis.sadd(key, ...members.slice(i, i + 10_000));
    const base = t.server.url.replace('/graphql', '');
    const started = Date.now();
    const [res, ready] = await Promise.all([t.gql(aliases(10, `dataSet(key: "big", first: 100) { members nextCursor }`)), fetch(`${base}/readyz`)]);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(ready.status).toBe(200);
    expect(res.errors).toBeUndefined();
    for (const page of Object.values(res.data!) as { members: string[]; nextCursor: string | null }[]) {
      expect(page.members.length).toBeGreaterThan(0);
      expect(page.members.length).toBeLessThanOrEqual(1000);
      expect(page.nextCursor).not.toBeNull();
    }
    // the next page follows the cursor
    const next = await t.gql(`query($after: String) { dataSet(key: "big", first: 100, after: $after) { members } }`, { after: (res.data!.a0 as { nextCursor: string }).nextCursor });
    expect(next.data!.dataSet.members).not.toEqual(res.data!.a0.members);
    await t.redis.del(key);
  });
});

describe('rate limit per principal', () => {
  it('refuses a principal over its bucket with RATE_LIMITED and retryAfterMs (HTTP 429, WebSocket), others go on', async () => {
    const s = await server({ ratePerSecond: 1, rateBurst: 3 });
    const token = await s.token({ role: 'service', sub: 'greedy' });
    const QUERY = `{ stateMachines { name } }`;
    for (let i = 0; i < 3; i++) expect((await s.gql(QUERY, undefined, { token })).errors).toBeUndefined();
    const res = await fetch(s.server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: QUERY }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as { errors: { message: string; extensions: { code: string; retryAfterMs: number } }[] };
    expect(body.errors[0]!.extensions.code).toBe('RATE_LIMITED');
    expect(body.errors[0]!.extensions.retryAfterMs).toBeGreaterThan(0);
    expect(body.errors[0]!.extensions.retryAfterMs).toBeLessThanOrEqual(1000);
    // the same principal over WebSocket shares the bucket (it is in Redis)
    const socket = await ws(s, token);
    expect(codes(await socket.run(QUERY))).toEqual(['RATE_LIMITED']);
    // another principal of the same tenant is served
    expect((await s.gql(QUERY, undefined, { token: await s.token({ role: 'service', sub: 'modest' }) })).errors).toBeUndefined();
    // and the bucket refills
    await expect.poll(async () => (await s.gql(QUERY, undefined, { token })).errors, { timeout: 3000, interval: 200 }).toBeUndefined();
  });

  it('refuses a flood in bounded time while other principals are served', async () => {
    const s = await server({ ratePerSecond: 10, rateBurst: 20 });
    const token = await s.token({ role: 'service', sub: 'flood' });
    const { result, othersServed, ms } = await whileServingOthers(s, () =>
      Promise.all(Array.from({ length: 200 }, () => s.gql(`{ stateMachines { name } }`, undefined, { token }))),
    );
    const allowed = result.filter((r) => r.status === 200).length;
    expect(result.filter((r) => r.status === 429).length).toBe(200 - allowed);
    // the burst, plus what the bucket refilled while the flood lasted
    expect(allowed).toBeGreaterThanOrEqual(20);
    expect(allowed).toBeLessThanOrEqual(20 + Math.ceil((10 * ms) / 1000) + 1);
    expect(othersServed).toBeGreaterThan(0);
  });
});

describe('introspection by environment', () => {
  const INTROSPECT = `{ __schema { queryType { name } } }`;

  it('is off in production on both transports, and so is the playground', async () => {
    const production = readConfig({ NODE_ENV: 'production', AUTH_JWT_SECRET: TEST_JWT_SECRET });
    const s = await server({}, { nodeEnv: 'production', production: true, introspection: production.introspection, playground: production.playground });
    const socket = await ws(s);
    for (const res of [await s.gql(INTROSPECT), await socket.run(INTROSPECT), await s.gql(`{ __type(name: "Query") { name } }`)]) {
      expect(new Set(codes(res))).toEqual(new Set(['GRAPHQL_VALIDATION_FAILED']));
      expect(res.errors![0]!.message).toMatch(/introspection/i);
      expect(res.data ?? null).toBeNull();
    }
    const page = await fetch(s.server.url, { headers: { accept: 'text/html' } });
    expect(await page.text()).not.toMatch(/<html/i);
    // ordinary operations work
    expect((await socket.run(`{ stateMachines { name } }`)).errors).toBeUndefined();
  });

  it('is on in production with GRAPHQL_INTROSPECTION=true, and outside production', async () => {
    const s = await server({}, { nodeEnv: 'production', production: true, introspection: true });
    const socket = await ws(s);
    expect(await socket.run(INTROSPECT)).toEqual({ data: { __schema: { queryType: { name: 'Query' } } } });
    expect((await s.gql(INTROSPECT)).data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    const page = await fetch(t.server.url, { headers: { accept: 'text/html' } });
    expect(await page.text()).toMatch(/<html/i);
    expect((await t.gql(INTROSPECT)).errors).toBeUndefined();
  });
});
