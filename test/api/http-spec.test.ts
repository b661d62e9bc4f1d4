/**
 * GraphQL over HTTP: graphql-http's server audits pass every MUST and SHOULD against a started server,
 * and the status codes per media type hold for this API's own documents: request errors (parse,
 * validation, operation, variables) are 200 under application/json and 400 under
 * application/graphql-response+json, with the same body. GET serves queries only and keeps Apollo's
 * CSRF prevention; the MAY items about GET pass for a client that sends a preflight header.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverAudits, type Audit } from 'graphql-http';
import { startTestServer, type TestServer } from './harness.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});

afterAll(async () => {
  await t?.close();
});

const JSON_TYPE = 'application/json';
const GRAPHQL_RESPONSE_TYPE = 'application/graphql-response+json';
/** Apollo's CSRF prevention lets a request through that carries one of its preflight headers. */
const PREFLIGHT = { 'apollo-require-preflight': 'true' };

/**
 * Every request of this file goes through here: the one place to add client headers (the audits'
 * own headers win; `extra` adds to them), e.g. a token once authentication exists.
 */
/** Every request of this file, the audits' own included, goes through here: with an admin token. */
function clientFetch(extra: Record<string, string> = {}): typeof fetch {
  return async (input, init = {}) => {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(extra)) if (!headers.has(name)) headers.set(name, value);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${await t.token()}`);
    return fetch(input, { ...init, headers });
  };
}

function audits(extra: Record<string, string> = {}): Audit[] {
  return serverAudits({ url: () => t.server.url, fetchFn: clientFetch(extra) });
}

async function expectAuditOk(audit: Audit): Promise<void> {
  const result = await audit.fn();
  if (result.status !== 'ok') {
    const body = await result.response.text().catch(() => '(body already read)');
    expect.fail(`${result.status}: ${result.reason}; HTTP ${result.response.status} ${body}`);
  }
}

const required = audits().filter((a) => a.name.startsWith('MUST ') || a.name.startsWith('SHOULD '));

describe('graphql-http server audits', () => {
  it('cover 13 MUSTs and 23 SHOULDs (graphql-http 1.23.1)', () => {
    expect(required.filter((a) => a.name.startsWith('MUST '))).toHaveLength(13);
    expect(required.filter((a) => a.name.startsWith('SHOULD '))).toHaveLength(23);
  });

  for (const audit of required) {
    it(`${audit.id} ${audit.name}`, () => expectAuditOk(audit));
  }
});

interface Exchange {
  status: number;
  contentType: string | null;
  body: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
}

async function post(accept: string | undefined, body: string, headers: Record<string, string> = {}): Promise<Exchange> {
  const res = await clientFetch()(t.server.url, {
    method: 'POST',
    headers: { 'content-type': JSON_TYPE, ...(accept ? { accept } : {}), ...headers },
    body,
  });
  return { status: res.status, contentType: res.headers.get('content-type'), body: (await res.json()) as Exchange['body'] };
}

async function get(params: Record<string, string>, headers: Record<string, string> = {}): Promise<Exchange & { allow: string | null }> {
  const url = new URL(t.server.url);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  const res = await clientFetch()(url, { headers });
  return { status: res.status, allow: res.headers.get('allow'), contentType: res.headers.get('content-type'), body: (await res.json()) as Exchange['body'] };
}

const codes = (e: Pick<Exchange, 'body'>) => (e.body.errors ?? []).map((error) => error.extensions?.code);

describe('status codes by media type', () => {
  const requestErrors: { what: string; request: Record<string, unknown>; code: string }[] = [
    { what: 'a document that does not parse', request: { query: '{ workflows(first: 1 { items { id } } }' }, code: 'GRAPHQL_PARSE_FAILED' },
    { what: 'a document that fails validation', request: { query: '{ workflow(id: "x") { noSuchField } }' }, code: 'GRAPHQL_VALIDATION_FAILED' },
    {
      what: 'a literal argument of the wrong type',
      request: { query: 'mutation { transitionWorkflow(input: {id: "x"}) { id } }' },
      code: 'GRAPHQL_VALIDATION_FAILED',
    },
    { what: 'variables that fail coercion', request: { query: 'query($id: ID!) { workflow(id: $id) { id } }', variables: { id: null } }, code: 'BAD_USER_INPUT' },
    {
      what: 'a variable of the wrong shape',
      request: { query: 'mutation($input: TransitionWorkflowInput!) { transitionWorkflow(input: $input) { id } }', variables: { input: { id: 'x', to: 7 } } },
      code: 'BAD_USER_INPUT',
    },
    {
      what: 'two operations and no operationName',
      request: { query: 'query A { stateMachines { name } } query B { stateMachines { name } }' },
      code: 'OPERATION_RESOLUTION_FAILURE',
    },
  ];

  for (const { what, request, code } of requestErrors) {
    it(`${what}: 200 under application/json, 400 under application/graphql-response+json, the same body (${code})`, async () => {
      const before = await t.snapshot();
      const body = JSON.stringify(request);
      const legacy = await post(JSON_TYPE, body);
      const anyType = await post('*/*', body);
      const noAccept = await post(undefined, body);
      const modern = await post(GRAPHQL_RESPONSE_TYPE, body);

      for (const res of [legacy, anyType, noAccept]) {
        expect(res.status).toBe(200);
        expect(res.contentType).toMatch(/^application\/json\b/);
      }
      expect(modern.status).toBe(400);
      expect(modern.contentType).toMatch(/^application\/graphql-response\+json\b/);
      for (const res of [legacy, anyType, noAccept, modern]) {
        expect(new Set(codes(res))).toEqual(new Set([code]));
        expect(res.body).not.toHaveProperty('data');
        expect(res.body).toEqual(legacy.body);
      }
      expect(await t.snapshot()).toEqual(before);
    });
  }

  it('an error while executing (NOT_FOUND) is 200 under both media types', async () => {
    const body = JSON.stringify({ query: 'mutation { transitionWorkflow(input: {id: "no-such-workflow", to: "b"}) { id } }' });
    for (const accept of [JSON_TYPE, GRAPHQL_RESPONSE_TYPE]) {
      const res = await post(accept, body);
      expect(res.status).toBe(200);
      expect(codes(res)).toEqual(['NOT_FOUND']);
      // mutation root fields are nullable: only the failing field is null
      expect(res.body.data).toEqual({ transitionWorkflow: null });
    }
  });

  it('a request that is not well-formed stays 400 under application/json too', async () => {
    const cases: [string, Record<string, string>, string][] = [
      ['{ "not a JSON', {}, 'BAD_REQUEST'],
      [JSON.stringify({ qeury: '{ __typename }' }), {}, 'BAD_REQUEST'],
      [JSON.stringify({ query: '{ __typename }', variables: '{}' }), {}, 'BAD_REQUEST'],
      [JSON.stringify({ query: '{ __typename }' }), { 'content-type': 'text/plain' }, 'BAD_REQUEST'],
    ];
    for (const [body, headers, code] of cases) {
      for (const accept of [JSON_TYPE, GRAPHQL_RESPONSE_TYPE]) {
        const res = await post(accept, body, headers);
        expect(res.status, `${accept} ${body}`).toBe(400);
        expect(codes(res)).toEqual([code]);
      }
    }
  });

  it('an Accept header that allows neither JSON type is 406', async () => {
    const res = await clientFetch()(t.server.url, {
      method: 'POST',
      headers: { 'content-type': JSON_TYPE, accept: 'text/csv' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(res.status).toBe(406);
    expect(codes({ body: (await res.json()) as Exchange['body'] })).toEqual(['BAD_REQUEST']);
  });

  it('other methods are 405 with allow: GET, POST', async () => {
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const res = await clientFetch()(t.server.url, { method, headers: { 'content-type': JSON_TYPE }, body: JSON.stringify({ query: '{ __typename }' }) });
      expect(res.status, method).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, POST');
      expect(codes({ body: (await res.json()) as Exchange['body'] })).toEqual(['BAD_REQUEST']);
    }
  });

  it('a body over 1 MiB is 413 BAD_REQUEST', async () => {
    const res = await post(JSON_TYPE, JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(1024 * 1024) } }));
    expect(res.status).toBe(413);
    expect(codes(res)).toEqual(['BAD_REQUEST']);
  });
});

describe('GET', () => {
  const getAudits = ['5A70', 'D6D5', '6A70'];

  it('runs queries with URL-encoded variables for a client that sends a preflight header (the MAY audits)', async () => {
    const chosen = audits(PREFLIGHT).filter((a) => getAudits.includes(a.id));
    expect(chosen.map((a) => a.id).sort()).toEqual([...getAudits].sort());
    for (const audit of chosen) await expectAuditOk(audit);

    const res = await get({ query: 'query($n: ID!) { stateMachine(name: $n) { name } }', variables: JSON.stringify({ n: 'order' }) }, PREFLIGHT);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { stateMachine: { name: 'order' } } });
    // content-type: application/json also counts as a preflight (a browser cannot send it cross-site unasked)
    expect((await get({ query: '{ __typename }' }, { 'content-type': JSON_TYPE })).status).toBe(200);
  });

  it('without a preflight header is refused as a potential CSRF (400 BAD_REQUEST), so the MAY audits fail', async () => {
    for (const audit of audits().filter((a) => getAudits.includes(a.id))) {
      const result = await audit.fn();
      expect(result.status, audit.name).not.toBe('ok');
      if (result.status !== 'ok') expect(result.response.status).toBe(400);
    }
    const res = await get({ query: '{ __typename }' });
    expect(res.status).toBe(400);
    expect(codes(res)).toEqual(['BAD_REQUEST']);
    expect(res.body.errors?.[0]?.message).toMatch(/Cross-Site Request Forgery/);
  });

  it('from a browser (Accept: text/html) gets the Apollo Sandbox landing page', async () => {
    const res = await clientFetch()(t.server.url, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toMatch(/<html/i);
  });

  it('refuses mutations (405, allow: POST) and writes nothing', async () => {
    const before = await t.snapshot();
    const mutation = 'mutation { restockProduct(productId: "http-get", quantity: 5) { id stock } }';
    for (const accept of [JSON_TYPE, GRAPHQL_RESPONSE_TYPE]) {
      const res = await get({ query: mutation }, { ...PREFLIGHT, accept });
      expect(res.status).toBe(405);
      expect(res.allow).toBe('POST');
      expect(codes(res)).toEqual(['BAD_REQUEST']);
    }
    expect(await t.snapshot()).toEqual(before);
    // the same mutation over POST does write, so the GET above was refused for its method alone
    const posted = await post(JSON_TYPE, JSON.stringify({ query: mutation }));
    expect(posted.body).toEqual({ data: { restockProduct: { id: 'http-get', stock: 5 } } });
  });

  it('a form-encoded POST body (application/x-www-form-urlencoded) is refused and writes nothing', async () => {
    const before = await t.snapshot();
    const form = new URLSearchParams({ query: 'mutation { restockProduct(productId: "http-form", quantity: 5) { id stock } }' }).toString();
    for (const headers of [{}, PREFLIGHT]) {
      const res = await post(JSON_TYPE, form, { 'content-type': 'application/x-www-form-urlencoded', ...headers });
      expect(res.status).toBe(400);
      expect(codes(res)).toEqual(['BAD_REQUEST']);
    }
    expect(await t.snapshot()).toEqual(before);
  });
});
