/**
 * The server as a process and as a member of a fleet: health and readiness while Redis comes and
 * goes, two instances relaying each other's events, finding or starting Redis, and clean shutdown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis } from '../setup/private-redis.js';
import { createTestEngine, redisUrl, uniqueTenant } from '../setup/helpers.js';
import { redisServersIn } from '../setup/processes.js';
import { createServer } from '../../src/server.js';
import { resolveRedis, RedisUnavailableError } from '../../src/redis/connect.js';
import { openSubscription, postGraphQL, TEST_JWT_SECRET, testConfig, testToken, uid } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A PATH with node and nothing else (so no redis-server), wherever node is installed. */
function pathWithNodeOnly(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-path-'));
  symlinkSync(process.execPath, path.join(dir, 'node'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
const MAIN = path.resolve('src/main.ts');

async function status(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

/** Runs `npm start`'s entry point as a child process and resolves with its endpoint once it prints it. */
function startMain(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; output: () => string; token: () => string | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 20_000);
    child.stdout!.on('data', () => {
      const match = /GraphQL endpoint: ([^\s"]+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1]!, output: () => output, token: () => /admin token for tenant default [^:]*: ([^\s"]+)/.exec(output)?.[1] ?? null });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${output}`));
    });
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('health and readiness', () => {
  it('answers /healthz while alive and /readyz 503 while Redis is down, 200 once it is back', async () => {
    const port = await freePort();
    let redis = await startPrivateRedis(port);
    const server = await createServer(testConfig({ redisUrl: redis.url }));
    cleanups.push(() => server.stop());
    const base = server.url.replace('/graphql', '');
    expect(await status(`${base}/healthz`)).toBe(200);
    expect(await status(`${base}/readyz`)).toBe(200);

    await redis.stop();
    await expect.poll(() => status(`${base}/readyz`), { timeout: 10_000 }).toBe(503);
    expect(await status(`${base}/healthz`)).toBe(200);

    // a new, empty Redis on the same port: the server reconnects and loads its functions again
    redis = await startPrivateRedis(port);
    cleanups.push(() => redis.stop());
    await expect.poll(() => status(`${base}/readyz`), { timeout: 15_000 }).toBe(200);
    const res = await postGraphQL(server.url, '{ stateMachine(name: "order") { name version } }', undefined, await testToken({ tenant: 'default' }));
    expect(res.data).toEqual({ stateMachine: { name: 'order', version: 1 } });
  });
});

describe('several instances', () => {
  it('relays to a subscriber on one instance the events caused through another', async () => {
    const tenant = uniqueTenant('fleet');
    const a = await createServer(testConfig());
    const b = await createServer(testConfig());
    const token = await testToken({ tenant });
    cleanups.push(() => a.stop(), () => b.stop());
    const redis = new Redis(redisUrl());
    cleanups.push(() => redis.disconnect());
    const machine = `m${uid('').replace(/-/g, '')}`;
    const define = await postGraphQL(b.url, 'mutation($n: ID!) { defineStateMachine(input: {name: $n, initialState: "open", states: ["open", "shut"], transitions: [{from: "open", to: ["shut"]}]}) { version } }', { n: machine }, token);
    expect(define.errors).toBeUndefined();

    const channel = a.engine.context.keys(tenant).workflowChannel();
    const sub = await openSubscription(
      a.wsUrl,
      () => a.listenerCount(channel),
      'subscription($m: String) { workflowEvents(machine: $m) { workflowId from to version } }',
      { m: machine },
      token,
    );
    cleanups.push(() => sub.close());
    await postGraphQL(b.url, 'mutation($m: String!) { startWorkflow(input: {id: "door", machine: $m}) { id } }', { m: machine }, token);
    await postGraphQL(b.url, 'mutation { transitionWorkflow(input: {id: "door", to: "shut"}) { id } }', undefined, token);
    const events = await sub.waitFor(2);
    expect(events.map((e) => e.workflowEvents)).toEqual([
      { workflowId: 'door', from: null, to: 'open', version: 1 },
      { workflowId: 'door', from: 'open', to: 'shut', version: 2 },
    ]);
  });
});

describe('finding Redis', () => {
  it('fails with a message naming both fixes when no Redis answers and redis-server is not on PATH', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const attempt = resolveRedis({ redisUrl: null, localUrl: closed, dataDir: os.tmpdir(), pathEnv: pathWithNodeOnly() });
    await expect(attempt).rejects.toBeInstanceOf(RedisUnavailableError);
    await expect(attempt).rejects.toThrow(/set REDIS_URL.*install redis-server/s);
  });

  it('exits the process with that message', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      // PATH holds node only: no redis-server to start
      env: { PATH: pathWithNodeOnly(), HOME: os.tmpdir(), LOCAL_REDIS_URL: closed, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    expect(await exitOf(child)).toBe(1);
    expect(stderr).toContain('REDIS_URL is not set');
    expect(stderr).toMatch(/set REDIS_URL to a Redis 7\+ server/);
    expect(stderr).toMatch(/install redis-server/);
  });

  it('exits with a message naming a bad setting', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: { PATH: pathWithNodeOnly(), HOME: os.tmpdir(), PORT: 'eighty' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    expect(await exitOf(child)).toBe(1);
    expect(stderr).toContain('PORT must be an integer from 0 to 65535, got "eighty"');
  });

  it('starts a private redis-server with an append-only file when none answers, and stops it on SIGTERM', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-data-'));
    cleanups.push(() => {
      // a failed run (the server killed before it could stop it) must not leave its Redis behind
      for (const pid of redisServersIn(dataDir)) process.kill(pid, 'SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    });
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const { child, url, output, token } = await startMain({ LOCAL_REDIS_URL: closed, DATA_DIR: dataDir, PORT: '0', WORKER_ENABLED: 'false' });
    expect(output()).toContain('started a private redis-server');
    // no key configured: it prints an admin token for tenant default, signed with a secret it keeps in DATA_DIR
    await expect.poll(token).not.toBeNull();
    expect(await postGraphQL(url, '{ stateMachines { name } }').then((r) => r.errors?.[0]?.extensions?.code)).toBe('UNAUTHENTICATED');
    const res = await postGraphQL(url, 'mutation { restockProduct(productId: "p1", quantity: 3) { id stock } }', undefined, token());
    expect(res.data).toEqual({ restockProduct: { id: 'p1', stock: 3 } });
    expect(existsSync(path.join(dataDir, 'dev-jwt-secret'))).toBe(true);
    child.kill('SIGTERM');
    expect(await exitOf(child)).toBe(0);
    // redis-server wrote its append-only file there (Redis 7 keeps it in appendonlydir/)
    expect(existsSync(path.join(dataDir, 'appendonlydir'))).toBe(true);
    expect(readdirSync(path.join(dataDir, 'appendonlydir')).some((f) => f.includes('.aof'))).toBe(true);
  });
});

describe('the worker as a process of its own (npm run worker)', () => {
  it('applies due scheduled transitions of its tenants and stops on SIGTERM', async () => {
    const tenant = uniqueTenant('worker');
    const { redis, engine } = await createTestEngine();
    cleanups.push(() => redis.disconnect());
    await engine.workflows.defineMachine(tenant, { name: 'light', initialState: 'off', states: ['off', 'on'], transitions: [{ from: 'off', to: ['on'] }] });
    await engine.workflows.start(tenant, { id: 'lamp', machine: 'light' });
    const entry = await engine.scheduler.schedule(tenant, { workflowId: 'lamp', to: 'on', runAt: new Date() });

    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/worker/main.ts')], {
      env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), REDIS_URL: redisUrl(), WORKER_TENANTS: tenant, WORKER_TICK_MS: '50' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    cleanups.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    await expect.poll(async () => (await engine.scheduler.get(tenant, entry.id))?.status, { timeout: 15_000 }).toBe('DONE');
    expect((await engine.workflows.get(tenant, 'lamp'))?.state).toBe('on');
    expect(output).toContain(`scheduler worker running on ${redisUrl()} for tenants ${tenant}`);
    child.kill('SIGTERM');
    expect(await exitOf(child)).toBe(0);
  });
});

describe('shutdown', () => {
  it('on SIGTERM closes subscriptions with 1001 Going Away and exits 0', async () => {
    const { child, url } = await startMain({ REDIS_URL: redisUrl(), PORT: '0', WORKER_ENABLED: 'true', AUTH_JWT_SECRET: TEST_JWT_SECRET });
    const closeCodes: number[] = [];
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${await testToken({ tenant: 'default' })}` },
      on: { closed: (event) => closeCodes.push((event as { code: number }).code) },
    });
    const redis = new Redis(redisUrl());
    cleanups.push(() => redis.disconnect());
    const channel = 'atomflow:{default}:events:workflows';
    const before = Number(((await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]);
    const done = new Promise<void>((resolve) =>
      client.subscribe({ query: 'subscription { workflowEvents { eventId } }' }, { next: () => {}, error: () => resolve(), complete: () => resolve() }),
    );
    await expect.poll(async () => Number(((await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]), { timeout: 5000 }).toBeGreaterThan(before);
    child.kill('SIGTERM');
    expect(await exitOf(child)).toBe(0);
    await done;
    expect(closeCodes).toContain(1001);
    await client.dispose();
  });
});
