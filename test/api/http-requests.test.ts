/**
 * What the README promises about requests over HTTP: GET runs queries (with the CSRF header), never
 * mutations; the error codes a client can receive for a malformed request; and which numbers in
 * metadata come back exactly as sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

async function get(query: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${t.server.url}?query=${encodeURIComponent(query)}`, { headers: { authorization: `Bearer ${await t.token()}`, ...headers } });
  return { status: res.status, body: await res.json() };
}

async function post(body: string, contentType = 'application/json'): Promise<{ status: number; body: any }> {
  const res = await fetch(t.server.url, { method: 'POST', headers: { 'content-type': contentType, authorization: `Bearer ${await t.token()}` }, body });
  return { status: res.status, body: await res.json() };
}

const codes = (body: any) => (body.errors ?? []).map((e: any) => e.extensions?.code);

describe('GET requests and the CSRF header', () => {
  it('runs a query over GET with apollo-require-preflight', async () => {
    const res = await get('{ stateMachine(name: "order") { name } }', { 'apollo-require-preflight': 'true' });
    expect(res).toEqual({ status: 200, body: { data: { stateMachine: { name: 'order' } } } });
  });

  it('refuses a GET without the header, and a text/plain POST, as possible CSRF', async () => {
    const bare = await get('{ stateMachine(name: "order") { name } }');
    expect(bare.status).toBe(400);
    expect(codes(bare.body)).toEqual(['BAD_REQUEST']);
    const plain = await post(JSON.stringify({ query: '{ stateMachines { name } }' }), 'text/plain');
    expect(plain.status).toBe(400);
    expect(codes(plain.body)).toEqual(['BAD_REQUEST']);
  });

  it('refuses a mutation over GET with 405, writing nothing', async () => {
    const before = await t.snapshot();
    const res = await get('mutation { restockProduct(productId: "via-get", quantity: 1) { stock } }', { 'apollo-require-preflight': 'true' });
    expect(res.status).toBe(405);
    expect(codes(res.body)).toEqual(['BAD_REQUEST']);
    expect(await t.snapshot()).toEqual(before);
  });
});

describe('error codes of malformed requests', () => {
  it.each([
    ['not GraphQL syntax', JSON.stringify({ query: '{ stateMachines { ' }), 'GRAPHQL_PARSE_FAILED'],
    ['an operationName naming nothing', JSON.stringify({ query: 'query A { stateMachines { name } }', operationName: 'B' }), 'OPERATION_RESOLUTION_FAILURE'],
    ['several operations and no operationName', JSON.stringify({ query: 'query A { stateMachines { name } } query B { stateMachines { name } }' }), 'OPERATION_RESOLUTION_FAILURE'],
    ['no query', '{}', 'BAD_REQUEST'],
    ['a body that is not JSON', '{"query":', 'BAD_REQUEST'],
    ['an unknown persisted query hash', JSON.stringify({ extensions: { persistedQuery: { version: 1, sha256Hash: 'ab'.repeat(32) } } }), 'PERSISTED_QUERY_NOT_FOUND'],
  ])('%s: %s', async (_what, body, code) => {
    const res = await post(body);
    expect(codes(res.body)).toEqual([code]);
  });
});

describe('numbers in metadata', () => {
  it('keeps integers up to 2^53 - 1 and decimals of 15 significant digits; longer ones are rounded on input', async () => {
    const machine = `nums${Date.now().toString(36)}`;
    const define = await t.gql(`mutation { defineStateMachine(input: {name: "${machine}", initialState: "a", states: ["a", "b"], transitions: [{from: "a", to: ["b"]}]}) { version } }`);
    expect(define.errors, JSON.stringify(define.errors)).toBeUndefined();
    // the request text as a client sends it, digits and all
    const body = `{"query":"mutation($m: JSON) { startWorkflow(input: {id: \\"nums\\", machine: \\"${machine}\\", metadata: $m}) { metadata } }",
      "variables":{"m":{"safe":9007199254740991,"negSafe":-9007199254740991,"dec15":0.123456789012345,"big15":123456789.012345,
      "unsafe":9007199254740993,"thirty":123456789012345678901234567890,"huge":1e400}}}`;
    const res = await post(body);
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    expect(res.body.data.startWorkflow.metadata).toEqual({
      safe: 9007199254740991,
      negSafe: -9007199254740991,
      dec15: 0.123456789012345,
      big15: 123456789.012345,
      unsafe: 9007199254740992,
      thirty: 1.2345678901234568e29,
      huge: null,
    });
  });
});
