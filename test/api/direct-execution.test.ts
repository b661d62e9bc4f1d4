/**
 * Direct execution (src/graphql/direct-execution.ts) answers exactly what Apollo's pipeline answers:
 * the same requests go to a server with it on and one with HTTP_DIRECT_EXECUTION off, and status,
 * content type and body bytes must be identical; the request logs show which path ran each one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type RunningServer } from '../../src/server.js';
import { testConfig, testToken } from './harness.js';

interface Logged {
  message: string;
  fields?: Record<string, unknown>;
}

const servers: { server: RunningServer; logged: Logged[] }[] = [];
let token: string;

beforeAll(async () => {
  for (const httpDirectExecution of [true, false]) {
    const logged: Logged[] = [];
    const server = await createServer(testConfig({ httpDirectExecution }), { log: (message, fields) => logged.push({ message, fields }) });
    servers.push({ server, logged });
  }
  // both serve tenant `default` of the same Redis: the same data answers both
  token = await testToken({ tenant: 'default', role: 'admin' });
  await servers[0]!.server.engine.orders.restock('default', 'direct-widget', 7);
});
afterAll(async () => {
  for (const { server } of servers) await server.stop();
});

interface Answer {
  status: number;
  contentType: string | null;
  body: string;
}

async function send(server: RunningServer, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, contentType: res.headers.get('content-type'), body: await res.text() };
}

const PRODUCT = 'query Product($id: ID!) { product(id: $id) { id stock } }';
const GRAPHQL_RESPONSE = 'application/graphql-response+json';

/** Requests direct execution takes: success, resolver errors with and without data, names, Accept headers. */
const taken: [string, unknown, Record<string, string>?][] = [
  ['a read with variables', { query: PRODUCT, variables: { id: 'direct-widget' } }],
  ['a read of nothing', { query: PRODUCT, variables: { id: 'direct-none' } }],
  ['an engine error in one field of two', { query: '{ a: product(id: "direct-widget") { stock } b: product(id: "bad id!") { stock } }' }],
  ['two failing fields', { query: '{ a: product(id: "bad id!") { stock } b: account(id: "also bad!") { balanceCents } }' }],
  ['a failing mutation (nullable field)', { query: 'mutation { restockProduct(productId: "direct-widget", quantity: -1) { stock } }' }],
  ['an order refused by the engine', { query: 'mutation { processOrder(input: { orderId: "direct-o1", userId: "nobody", productId: "direct-widget", quantity: 99, unitPriceCents: 100 }) { id } }' }],
  ['one operation of two, by name', { query: `${PRODUCT} query Other { stateMachines { name } }`, operationName: 'Product', variables: { id: 'direct-widget' } }],
  ['operationName and variables null', { query: '{ product(id: "direct-widget") { stock } }', operationName: null, variables: null }],
  ['Accept: */*', { query: PRODUCT, variables: { id: 'direct-widget' } }, { accept: '*/*' }],
  ['Accept: application/json', { query: PRODUCT, variables: { id: 'direct-widget' } }, { accept: 'application/json' }],
  ['Accept: graphql-response+json', { query: PRODUCT, variables: { id: 'direct-widget' } }, { accept: GRAPHQL_RESPONSE }],
  ['an error under graphql-response+json', { query: '{ product(id: "bad id!") { stock } }' }, { accept: `${GRAPHQL_RESPONSE}, application/json;q=0.9` }],
];

/** Requests it hands to Apollo: request errors, other media types, persisted queries, subscriptions. */
const handedOver: [string, unknown, Record<string, string>?][] = [
  ['a document that does not parse', { query: '{ product(' }],
  ['a document that does not validate', { query: '{ product(id: "x") { nope } }' }],
  ['variables that do not coerce', { query: PRODUCT, variables: { id: { not: 'an id' } } }],
  ['an unknown operation name', { query: PRODUCT, operationName: 'Nope', variables: { id: 'x' } }],
  ['an Accept header Apollo refuses (406)', { query: PRODUCT, variables: { id: 'x' } }, { accept: 'text/html' }],
  ['a persisted query extension', { query: PRODUCT, variables: { id: 'x' }, extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } } }],
  ['a subscription over HTTP', { query: 'subscription { workflowEvents { workflowId } }' }],
  ['a query over the cost limit', { query: '{ account(id: "alice") { orders(first: 100) { items { workflow { history(first: 100) { entries { to } } } } } } }' }],
  ['an invalid token', { query: PRODUCT, variables: { id: 'x' } }, { authorization: 'Bearer nope' }],
];

describe('direct execution', () => {
  it.each([...taken, ...handedOver])('%s: the same status, content type and bytes as Apollo', async (_name, body, headers) => {
    const [direct, apollo] = [await send(servers[0]!.server, body, headers), await send(servers[1]!.server, body, headers)];
    expect(direct).toEqual(apollo);
  });

  it('runs the requests it takes itself and hands the others to Apollo, as the request log shows', async () => {
    const executors = async (cases: typeof taken) => {
      const { server, logged } = servers[0]!;
      const before = logged.length;
      for (const [, body, headers] of cases) await send(server, body, headers);
      return logged.slice(before).filter((l) => l.fields?.msgType === 'request').map((l) => l.fields!.executor);
    };
    expect(await executors(taken)).toEqual(taken.map(() => 'direct'));
    // an invalid token is answered before any operation starts: no request line (the last case)
    expect(await executors(handedOver)).toEqual(handedOver.slice(0, -1).map(() => 'apollo'));
  });

  it('with HTTP_DIRECT_EXECUTION=false Apollo runs everything', async () => {
    const { server, logged } = servers[1]!;
    const before = logged.length;
    await send(server, { query: PRODUCT, variables: { id: 'direct-widget' } });
    expect(logged.slice(before).filter((l) => l.fields?.msgType === 'request').map((l) => l.fields!.executor)).toEqual(['apollo']);
  });
});
