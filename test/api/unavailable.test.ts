/**
 * Redis trouble while serving is told apart from bugs: out of memory, unreachable or loading is
 * SERVICE_UNAVAILABLE with `extensions.retryable: true` (HTTP 503 for clients that take
 * application/graphql-response+json), /readyz is 503 while Redis refuses writes, and the worker
 * logs one line when Redis goes away and one when it returns. Also: a subscription sent over HTTP
 * is a BAD_REQUEST. Each Redis here is the test's own, never the shared one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis } from '../setup/private-redis.js';
import { redisUrl, uniqueTenant } from '../setup/helpers.js';
import { createServer, type RunningServer } from '../../src/server.js';
import { Engine } from '../../src/app/engine.js';
import { loadFunctions } from '../../src/redis/functions.js';
import { redisTrouble } from '../../src/redis/replies.js';
import { prefersGraphQLResponseJson } from '../../src/graphql/http-plugins.js';
import { SchedulerWorker } from '../../src/worker/scheduler.worker.js';
import { testConfig, testToken } from './harness.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

const GRAPHQL_RESPONSE = 'application/graphql-response+json';

/** Every request here is an admin's of the tenant `default` (the server's own, prepared at start). */
const adminToken = testToken({ tenant: 'default', role: 'admin' });

async function post(url: string, query: string, accept?: string): Promise<{ status: number; contentType: string; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await adminToken}`, ...(accept ? { accept } : {}) },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body: await res.json() };
}

async function readyz(server: RunningServer): Promise<{ status: number; body: any }> {
  const res = await fetch(server.url.replace('/graphql', '/readyz'));
  return { status: res.status, body: await res.json() };
}

const RESTOCK = 'mutation { restockProduct(productId: "bolt", quantity: 2) { stock } }';

describe('Redis out of memory', () => {
  it('answers SERVICE_UNAVAILABLE, retryable, 503 for graphql-response+json clients, /readyz 503; recovers when memory is freed', async () => {
    const own = await startPrivateRedis();
    cleanups.push(() => own.stop());
    const server = await createServer(testConfig({ redisUrl: own.url }));
    cleanups.push(() => server.stop());
    const admin = new Redis(own.url);
    cleanups.push(() => admin.disconnect());
    expect((await readyz(server)).status).toBe(200);

    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', '1'); // below what Redis already uses: every write is refused
    const before = await admin.dbsize();

    const asGraphQLResponse = await post(server.url, RESTOCK, `${GRAPHQL_RESPONSE}, application/json;q=0.9`);
    expect(asGraphQLResponse.status).toBe(503);
    expect(asGraphQLResponse.contentType).toContain(GRAPHQL_RESPONSE);
    expect(asGraphQLResponse.body.data).toEqual({ restockProduct: null }); // mutation fields are nullable
    expect(asGraphQLResponse.body.errors).toHaveLength(1);
    expect(asGraphQLResponse.body.errors[0].extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryable: true });
    expect(asGraphQLResponse.body.errors[0].message).toBe('Redis is out of memory and refuses writes; retry later');

    // application/json keeps 200 (its status codes carry no meaning for GraphQL results)
    const asJson = await post(server.url, RESTOCK, 'application/json');
    expect(asJson.status).toBe(200);
    expect(asJson.body.errors[0].extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryable: true });
    expect(await admin.dbsize()).toBe(before);

    // reads still work: they never need memory
    const read = await post(server.url, '{ product(id: "bolt") { stock } }', GRAPHQL_RESPONSE);
    expect(read.status).toBe(200);
    expect(read.body).toEqual({ data: { product: null } });

    const notReady = await readyz(server);
    expect(notReady.status).toBe(503);
    expect(notReady.body.reason).toBe('Redis is out of memory and refuses writes');

    await admin.config('SET', 'maxmemory', '0');
    expect((await readyz(server)).status).toBe(200);
    const retried = await post(server.url, RESTOCK, GRAPHQL_RESPONSE);
    expect(retried.status).toBe(200);
    expect(retried.body).toEqual({ data: { restockProduct: { stock: 2 } } });
  });
});

describe('Redis unreachable', () => {
  it('answers SERVICE_UNAVAILABLE, retryable, 503 for graphql-response+json clients, and logs the 503 it sent', async () => {
    const own = await startPrivateRedis();
    cleanups.push(() => own.stop());
    const logged: { message: string; fields?: Record<string, unknown> }[] = [];
    const server = await createServer(testConfig({ redisUrl: own.url }), { log: (message, fields) => logged.push({ message, fields }) });
    cleanups.push(() => server.stop());
    await own.stop();

    const res = await post(server.url, RESTOCK, GRAPHQL_RESPONSE);
    expect(res.status).toBe(503);
    expect(res.body.errors[0].extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryable: true });
    expect(res.body.errors[0].message).toBe('Redis is unreachable; retry later');
    const read = await post(server.url, '{ product(id: "bolt") { stock } }', GRAPHQL_RESPONSE);
    expect(read.status).toBe(503);
    expect(read.body.errors[0].extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryable: true });
    // the request log shows the status the client got, not the one before the 503 mapping
    const requests = logged.filter((l) => l.fields?.msgType === 'request');
    expect(requests.map((l) => [l.fields!.errorCode, l.fields!.status])).toEqual([
      ['SERVICE_UNAVAILABLE', 503],
      ['SERVICE_UNAVAILABLE', 503],
    ]);
  });
});

describe('which Redis errors are trouble rather than bugs', () => {
  it('classifies the replies Redis gives while loading, busy or failing over as retryable, and bugs as not', async () => {
    // the class of the error replies ioredis raises, taken from a real one
    const shared = new Redis(redisUrl());
    cleanups.push(() => shared.disconnect());
    const real = await shared.call('FCALL', 'atomflow_no_such_function', '0').catch((err: Error) => err);
    const ReplyError = (real as Error).constructor as new (message: string) => Error;
    expect(redisTrouble(real)).toBeNull();
    expect(redisTrouble(new ReplyError('LOADING Redis is loading the dataset in memory'))).toBe('Redis is loading its data set');
    expect(redisTrouble(new ReplyError("OOM command not allowed when used memory > 'maxmemory'."))).toBe('Redis is out of memory and refuses writes');
    expect(redisTrouble(new ReplyError('BUSY Redis is busy running a script.'))).toBe('Redis is busy running a script');
    expect(redisTrouble(new ReplyError('ERR Function not found'))).toBeNull();
    expect(redisTrouble(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBeNull();
    expect(redisTrouble(new TypeError("Cannot read properties of undefined (reading 'x')"))).toBeNull();
  });

  it('reads the Accept header as Apollo does when choosing the response media type', () => {
    expect(prefersGraphQLResponseJson(undefined)).toBe(false);
    expect(prefersGraphQLResponseJson('application/json')).toBe(false);
    expect(prefersGraphQLResponseJson('*/*')).toBe(false);
    expect(prefersGraphQLResponseJson(GRAPHQL_RESPONSE)).toBe(true);
    expect(prefersGraphQLResponseJson(`${GRAPHQL_RESPONSE}, application/json;q=0.9`)).toBe(true);
    expect(prefersGraphQLResponseJson(`application/json, ${GRAPHQL_RESPONSE}`)).toBe(false);
    expect(prefersGraphQLResponseJson(`${GRAPHQL_RESPONSE};q=0.5, application/json`)).toBe(false);
  });
});

/** A redis-server of this test that keeps its data (functions included) in an RDB across restarts. */
async function startDurableRedis(port: number, dir: string): Promise<{ url: string; shutdown(): Promise<void> }> {
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  child.on('error', () => {});
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
  probe.on('error', () => {});
  await probe.ping();
  probe.disconnect();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    url,
    async shutdown() {
      const admin = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
      admin.on('error', () => {});
      admin.call('SHUTDOWN', 'SAVE').catch(() => {}); // no reply: the connection drops as it exits
      await exited;
      admin.disconnect();
    },
  };
}

describe('the worker while Redis comes and goes', () => {
  it('logs one line when Redis goes away and one when it returns, not one per tick', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-outage-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    let own = await startDurableRedis(port, dir);
    // reconnect every 50 ms (not ioredis' growing back-off): the outage shows in a few ticks
    const redis = new Redis(own.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    redis.on('error', () => {});
    cleanups.push(() => redis.disconnect());
    await loadFunctions(redis);
    const engine = new Engine(redis);
    let claims = 0;
    const counting = {
      scheduler: {
        claimDue: (...args: Parameters<typeof engine.scheduler.claimDue>) => {
          claims++;
          return engine.scheduler.claimDue(...args);
        },
        apply: engine.scheduler.apply.bind(engine.scheduler),
      },
    };
    const lines: string[] = [];
    const worker = new SchedulerWorker(counting, { tenants: [uniqueTenant('outage')], tickMs: 10, log: (line) => lines.push(line) });
    worker.start();
    cleanups.push(() => worker.stop());
    await expect.poll(() => claims, { timeout: 5000 }).toBeGreaterThan(2);
    expect(lines).toEqual([]);

    // out of memory: the claim (a write) is refused
    await redis.config('SET', 'maxmemory', '1');
    await expect.poll(() => lines.length, { timeout: 5000 }).toBe(1);
    let seen = claims;
    await expect.poll(() => claims, { timeout: 5000 }).toBeGreaterThan(seen + 5);
    await redis.config('SET', 'maxmemory', '0');
    await expect.poll(() => lines.length, { timeout: 5000 }).toBe(2);
    seen = claims;
    await expect.poll(() => claims, { timeout: 5000 }).toBeGreaterThan(seen + 5);
    expect(lines).toEqual([
      'scheduler: Redis is out of memory and refuses writes; waiting for Redis (due entries are applied once it is back)',
      'scheduler: Redis is back; applying due entries again',
    ]);

    // unreachable: stopped, then started again with its functions (saved in its RDB)
    await own.shutdown();
    await expect.poll(() => lines.length, { timeout: 5000 }).toBe(3);
    seen = claims;
    await expect.poll(() => claims, { timeout: 15_000 }).toBeGreaterThan(seen + 3);
    own = await startDurableRedis(port, dir);
    await expect.poll(() => lines.length, { timeout: 10_000 }).toBe(4);
    seen = claims;
    await expect.poll(() => claims, { timeout: 5000 }).toBeGreaterThan(seen + 5);
    expect(lines.slice(2)).toEqual([
      'scheduler: Redis is unreachable; waiting for Redis (due entries are applied once it is back)',
      'scheduler: Redis is back; applying due entries again',
    ]);
    await worker.stop();
    await own.shutdown();
  });
});

describe('a subscription sent over HTTP', () => {
  it('is a BAD_REQUEST (HTTP 400) naming where subscriptions are served', async () => {
    const server = await createServer(testConfig());
    cleanups.push(() => server.stop());
    for (const accept of ['application/json', GRAPHQL_RESPONSE]) {
      const res = await post(server.url, 'subscription { workflowEvents { eventId } }', accept);
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([
        {
          message: 'subscriptions are served over WebSocket (graphql-ws protocol) at /graphql, not over HTTP',
          extensions: { code: 'BAD_REQUEST' },
        },
      ]);
    }
  });
});
