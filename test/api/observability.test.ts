/**
 * What an operator watches: GET /metrics (Prometheus text) shows every series after operations ran,
 * with bounded labels (no ids); the logs are one JSON object per line, one per request and one per
 * scheduled entry settled, with a stack only for unexpected errors, in one line; LOG_FORMAT=pretty
 * is human-readable.
 */
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type RunningServer } from '../../src/server.js';
import { createLogger, logTo, type LogFields } from '../../src/log.js';
import { SchedulerWorker } from '../../src/worker/scheduler.worker.js';
import { openSubscription, postGraphQL, testConfig, testToken, uid } from './harness.js';
import { uniqueTenant } from '../setup/helpers.js';

interface Logged {
  message: string;
  fields?: LogFields;
}

/** Parses the Prometheus text format into `name{labels}` -> value. */
function parseMetrics(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

async function scrape(server: RunningServer): Promise<{ text: string; series: Map<string, number>; contentType: string | null }> {
  const res = await fetch(new URL('/metrics', server.url));
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, series: parseMetrics(text), contentType: res.headers.get('content-type') };
}

describe('metrics and logs', () => {
  let server: RunningServer;
  let tenant: string;
  let token: string;
  const logged: Logged[] = [];
  const ids = { order: uid('m-order'), user: uid('m-user'), product: uid('m-product'), wf: uid('m-wf') };

  beforeAll(async () => {
    tenant = uniqueTenant('metrics');
    server = await createServer(testConfig({ worker: { enabled: false, tenants: [tenant], tickMs: 250, leaseMs: 30_000, maxAttempts: 5 } }), {
      log: (message, fields) => logged.push({ message, fields }),
    });
    token = await testToken({ tenant, role: 'admin' });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('after operations ran, /metrics shows every series, with no ids in labels', async () => {
    const ordersChannel = server.engine.context.keys(tenant).ordersChannel();
    const sub = await openSubscription(server.wsUrl, () => server.listenerCount(ordersChannel), 'subscription Feed { orderEvents { orderId } }', undefined, token);
    try {
      const gql = (q: string, v?: Record<string, unknown>) => postGraphQL<Record<string, any>>(server.url, q, v, token);
      await gql(`mutation Stock($p: ID!, $u: ID!) { restockProduct(productId: $p, quantity: 1) { stock } depositFunds(accountId: $u, amountCents: 1000) { balanceCents } }`, {
        p: ids.product,
        u: ids.user,
      });
      const place = `mutation PlaceOrder($o: ID!, $u: ID!, $p: ID!, $q: Int!) { processOrder(input: { orderId: $o, userId: $u, productId: $p, quantity: $q, unitPriceCents: 100 }) { id } }`;
      expect((await gql(place, { o: ids.order, u: ids.user, p: ids.product, q: 1 })).errors).toBeUndefined();
      const refused = await gql(place, { o: uid('m-order'), u: ids.user, p: ids.product, q: 5 });
      expect(refused.errors?.[0]?.extensions?.code).toBe('OUT_OF_STOCK');
      await sub.waitFor(1);
      await gql(`query Machines { stateMachines { name } }`);

      // a scheduled transition due 5 s ago, not yet applied: the scheduler lags
      await gql(`mutation { defineStateMachine(input: { name: "m", initialState: "a", states: ["a", "b"], transitions: [{ from: "a", to: ["b"] }] }) { name } }`);
      await gql(`mutation($id: ID!) { startWorkflow(input: { id: $id, machine: "m" }) { id } }`, { id: ids.wf });
      const runAt = new Date(Date.now() - 5000).toISOString();
      await gql(`mutation($w: ID!, $r: DateTime!) { scheduleTransition(input: { workflowId: $w, to: "b", runAt: $r }) { id } }`, { w: ids.wf, r: runAt });

      const before = await scrape(server);
      expect(before.contentType).toMatch(/^text\/plain/);
      expect(before.series.get('atomflow_scheduler_lag_seconds')).toBeGreaterThanOrEqual(5);
      expect(before.series.get('atomflow_websocket_open_sockets')).toBe(1);
      expect(before.series.get('atomflow_subscriptions_active{kind="orders"}')).toBe(1);

      // apply it (and one that fails: the workflow has moved on) with a worker tick
      await gql(`mutation($w: ID!, $r: DateTime!) { scheduleTransition(input: { workflowId: $w, to: "b", runAt: $r }) { id } }`, { w: ids.wf, r: runAt });
      const worker = new SchedulerWorker(server.engine, { tenants: [tenant], log: (message, fields) => logged.push({ message, fields }) });
      expect(await worker.tick()).toBe(2);

      const { text, series } = await scrape(server);
      const value = (name: string) => {
        const v = series.get(name);
        if (v === undefined) throw new Error(`no series ${name} in:\n${text}`);
        return v;
      };
      expect(value('atomflow_redis_function_duration_seconds_count{function="order_process"}')).toBe(2);
      expect(value('atomflow_redis_function_duration_seconds_bucket{le="+Inf",function="order_process"}')).toBe(2);
      expect(value('atomflow_redis_function_duration_seconds_count{function="sched_apply"}')).toBe(2);
      expect(value('atomflow_redis_function_errors_total{function="order_process",code="OUT_OF_STOCK"}')).toBe(1);
      expect(value('atomflow_graphql_operation_duration_seconds_count{type="mutation",name="PlaceOrder"}')).toBe(2);
      expect(value('atomflow_graphql_operation_duration_seconds_count{type="query",name="Machines"}')).toBe(1);
      expect(value('atomflow_graphql_operation_duration_seconds_count{type="mutation",name="anonymous"}')).toBeGreaterThanOrEqual(4);
      expect(value('atomflow_graphql_errors_total{code="OUT_OF_STOCK"}')).toBe(1);
      expect(value('atomflow_websocket_open_sockets')).toBe(1);
      expect(value('atomflow_subscriptions_active{kind="orders"}')).toBe(1);
      expect(value('atomflow_subscriptions_active{kind="workflows"}')).toBe(0);
      expect(value('atomflow_events_relayed_total{kind="orders"}')).toBe(1);
      expect(value('atomflow_events_dropped_total{kind="orders"}')).toBe(0);
      expect(value('atomflow_scheduler_entries_total{outcome="applied"}')).toBe(1);
      expect(value('atomflow_scheduler_entries_total{outcome="failed"}')).toBe(1);
      expect(value('atomflow_scheduler_entries_total{outcome="error"}')).toBe(0);
      expect(value('atomflow_scheduler_lag_seconds')).toBe(0);
      const streamLength = await server.engine.context.redis.xlen(server.engine.context.keys(tenant).events());
      expect(streamLength).toBeGreaterThan(0);
      expect(value('atomflow_event_stream_length')).toBe(streamLength);
      expect(value('process_cpu_user_seconds_total')).toBeGreaterThan(0);
      expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
      expect(series.has('nodejs_eventloop_lag_seconds')).toBe(true);

      // bounded labels: no id, user, product, workflow or tenant ever appears in a series
      for (const id of [...Object.values(ids), tenant]) expect(text).not.toContain(id);
    } finally {
      sub.close();
    }
    // the socket closes: the gauges go back down
    await expect.poll(async () => (await scrape(server)).series.get('atomflow_websocket_open_sockets')).toBe(0);
    expect((await scrape(server)).series.get('atomflow_subscriptions_active{kind="orders"}')).toBe(0);
  });

  it('logs one line per request: request id, operation, duration, error code', async () => {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-42', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: 'query Missing($id: ID!) { workflow(id: $id) { id } product(id: "nope!") { id } }', variables: { id: 'x' } }),
    });
    expect(res.headers.get('x-request-id')).toBe('req-42');
    const noId = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: '{ stateMachines { name } }' }) });
    const generated = noId.headers.get('x-request-id');
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    const requests = logged.filter((l) => l.fields?.msgType === 'request').slice(-2);
    expect(requests).toHaveLength(2);
    expect(requests[0]!.fields).toMatchObject({ requestId: 'req-42', operationType: 'query', operationName: 'Missing', errorCode: 'BAD_USER_INPUT', status: 200 });
    expect(requests[0]!.fields!.durationMs).toEqual(expect.any(Number));
    expect(requests[1]!.fields).toMatchObject({ requestId: generated, operationType: 'query', operationName: null, errorCode: null });
    // no stack for an expected error
    expect(requests.every((l) => l.fields?.err === undefined)).toBe(true);
  });

  it('logs one line per scheduled entry applied or failed', async () => {
    const lines = logged.filter((l) => /^scheduled transition /.test(l.message));
    expect(lines).toHaveLength(2);
    const applied = lines.find((l) => l.fields?.status === 'DONE')!;
    const failed = lines.find((l) => l.fields?.status === 'FAILED')!;
    expect(applied.fields).toMatchObject({ level: 'info', tenant, workflowId: ids.wf, to: 'b' });
    expect(applied.fields!.lagMs).toBeGreaterThanOrEqual(5000);
    expect(failed.fields).toMatchObject({ level: 'warn', tenant, workflowId: ids.wf, errorCode: 'INVALID_TRANSITION' });
    expect(failed.message).toMatch(/failed: INVALID_TRANSITION/);
  });
});

describe('log format', () => {
  function capture(format: 'json' | 'pretty') {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += d));
    return { log: logTo(createLogger('info', format, out)), text: () => text };
  }

  it('JSON: one object per line; an unexpected error carries its stack in that one line', () => {
    const { log, text } = capture('json');
    log('plain line');
    log('request', { msgType: 'request', requestId: 'r1', durationMs: 1.5 });
    log('unexpected error: boom', { err: new Error('boom') });
    const lines = text().trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const [plain, request, failure] = lines.map((l) => JSON.parse(l));
    expect(plain).toMatchObject({ level: 'info', msg: 'plain line' });
    expect(plain.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(request).toMatchObject({ level: 'info', msg: 'request', requestId: 'r1', durationMs: 1.5 });
    expect(failure).toMatchObject({ level: 'error', msg: 'unexpected error: boom', err: { type: 'Error', message: 'boom' } });
    expect(failure.err.stack).toMatch(/^Error: boom\n\s+at /);
  });

  it('pretty: human-readable lines', () => {
    const { log, text } = capture('pretty');
    log('atomflow GraphQL endpoint: http://127.0.0.1:4000/graphql', { requestId: 'r2' });
    expect(text()).toMatch(/INFO.*: atomflow GraphQL endpoint: http:\/\/127\.0\.0\.1:4000\/graphql\n\s+requestId: "r2"/);
    expect(() => JSON.parse(text())).toThrow();
  });
});
