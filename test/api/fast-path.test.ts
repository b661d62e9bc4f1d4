/**
 * The compiled fast path (src/graphql/executor.ts) answers a POST of a document that Apollo has
 * validated before, without Apollo's request pipeline. Clients must not be able to tell: the first
 * request of each document goes through Apollo, the same request again takes the fast path, and both
 * answers must be byte-identical (status, headers, body), for data, engine errors, partial data and
 * variable errors, under each accept header the fast path takes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, uid, type TestServer } from './harness.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});

afterAll(async () => {
  await t?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

async function post(body: unknown, accept?: string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (accept !== undefined) headers.accept = accept;
  const res = await fetch(t.server.url, { method: 'POST', headers, body: JSON.stringify(body) });
  const all: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    if (name !== 'date') all[name] = value;
  });
  return { status: res.status, headers: all, body: await res.text() };
}

/** The same request twice (Apollo, then the fast path): the answers are equal; returns the first. */
async function twice(body: unknown, accept?: string): Promise<Answer> {
  const first = await post(body, accept);
  const second = await post(body, accept);
  expect(second).toEqual(first);
  return first;
}

const ACCEPTS = [undefined, '*/*', 'application/json', 'application/graphql-response+json'];

describe.each(ACCEPTS)('a repeated request answers byte-identically (accept: %s)', (accept) => {
  const expectedType = accept === 'application/graphql-response+json' ? 'application/graphql-response+json; charset=utf-8' : 'application/json; charset=utf-8';

  it('data', async () => {
    const product = uid('p');
    await t.gql(`mutation { restockProduct(productId: "${product}", quantity: 5) { id } }`);
    const a = await twice({ query: 'query ($id: ID!) { product(id: $id) { id stock } }', variables: { id: product } }, accept);
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe(expectedType);
    expect(a.body).toBe(`{"data":{"product":{"id":"${product}","stock":5}}}\n`);
  });

  it('an idempotent mutation answered the same both times', async () => {
    const [product, account, order] = [uid('p'), uid('a'), uid('o')];
    await t.gql(`mutation { restockProduct(productId: "${product}", quantity: 5) { id } depositFunds(accountId: "${account}", amountCents: 1000) { id } }`);
    const input = { orderId: order, userId: account, productId: product, quantity: 2, unitPriceCents: 100 };
    const a = await twice({ query: 'mutation ($input: ProcessOrderInput!) { processOrder(input: $input) { id state totalCents } }', variables: { input } }, accept);
    expect(JSON.parse(a.body)).toEqual({ data: { processOrder: { id: order, state: 'pending', totalCents: 200 } } });
    const { data } = await t.gql<{ product: { stock: number } }>(`{ product(id: "${product}") { stock } }`);
    expect(data?.product.stock).toBe(3); // charged once
  });

  it('an engine error (OUT_OF_STOCK) with its code, path and locations', async () => {
    const [product, account] = [uid('p'), uid('a')];
    await t.gql(`mutation { restockProduct(productId: "${product}", quantity: 1) { id } depositFunds(accountId: "${account}", amountCents: 1000) { id } }`);
    const input = { orderId: uid('o'), userId: account, productId: product, quantity: 9, unitPriceCents: 1 };
    const a = await twice({ query: 'mutation ($input: ProcessOrderInput!) {\n  processOrder(input: $input) { id }\n}', variables: { input } }, accept);
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe(expectedType);
    expect(JSON.parse(a.body)).toEqual({
      errors: [
        {
          message: `product ${product} has 1 in stock, 9 requested`,
          locations: [{ line: 2, column: 3 }],
          path: ['processOrder'],
          extensions: { code: 'OUT_OF_STOCK' },
        },
      ],
      data: null,
    });
  });

  it('partial data: one root field fails, the other answers', async () => {
    const product = uid('p');
    await t.gql(`mutation { restockProduct(productId: "${product}", quantity: 4) { id } }`);
    const a = await twice({ query: 'query ($a: ID!, $b: ID!) { a: product(id: $a) { stock } b: product(id: $b) { stock } }', variables: { a: product, b: 'bad id' } }, accept);
    const body = JSON.parse(a.body) as { data: unknown; errors: { path: string[]; extensions: { code: string } }[] };
    expect(body.data).toEqual({ a: { stock: 4 }, b: null });
    expect(body.errors.map((e) => [e.path, e.extensions.code])).toEqual([[['b'], 'BAD_USER_INPUT']]);
  });

  it('a variable of the wrong type (BAD_USER_INPUT, nothing resolved)', async () => {
    const a = await twice({ query: 'query ($id: ID!) { product(id: $id) { id } }', variables: { id: { no: 1 } } }, accept);
    const body = JSON.parse(a.body) as { errors: { extensions: { code: string } }[] };
    expect(body.errors.map((e) => e.extensions.code)).toEqual(['BAD_USER_INPUT']);
    expect(a.status).toBe(accept === 'application/graphql-response+json' ? 400 : 200);
  });

  it('NOT_FOUND through a named operation among several', async () => {
    const query = 'query A { product(id: "x") { id } }\nmutation B { transitionWorkflow(input: { id: "nope", to: "b" }) { id } }';
    const a = await twice({ query, operationName: 'B' }, accept);
    const body = JSON.parse(a.body) as { errors: { extensions: { code: string } }[] };
    expect(body.errors.map((e) => e.extensions.code)).toEqual(['NOT_FOUND']);
  });
});
