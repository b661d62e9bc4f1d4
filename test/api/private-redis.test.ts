/**
 * One private redis-server per data directory (no REDIS_URL, nothing at LOCAL_REDIS_URL): every
 * `npm start` and `npm run worker` on the directory uses the same one, whoever started it; it stops
 * with the last of them; a SIGKILLed server never leads to a second one; a stale record is replaced;
 * `npm run demo` finds the server of the directory.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../setup/private-redis.js';
import { deadPid, exitOf, redisServersIn, spawnEntry, startMain, waitForOutput, WORKER, type Spawned } from '../setup/processes.js';

const DEMO = path.resolve('scripts/demo.ts');
import { LOCK_FILE, readRecord, RECORD_FILE, USERS_DIR } from '../../src/redis/private-redis.js';
import { postGraphQL, TEST_JWT_SECRET, testToken, type GraphQLResponse } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function track<T extends Spawned>(spawned: T): T {
  cleanups.push(() => {
    if (spawned.child.exitCode === null && spawned.child.signalCode === null) spawned.child.kill('SIGKILL');
  });
  return spawned;
}

/** A fresh data directory; at the end, any redis-server still working in it is stopped. */
function dataDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-shared-'));
  cleanups.push(() => {
    for (const pid of redisServersIn(dir)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** The environment of a process that must use the private Redis of `dir`. */
async function privateEnv(dir: string): Promise<Record<string, string>> {
  return { LOCAL_REDIS_URL: `redis://127.0.0.1:${await freePort()}`, DATA_DIR: dir, PORT: '0', WORKER_ENABLED: 'false', AUTH_JWT_SECRET: TEST_JWT_SECRET };
}

/** Requests here are an admin's of the tenant `default`. */
const adminToken = testToken({ tenant: 'default', role: 'admin' });
async function gql<T = Record<string, any>>(url: string, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<T>> {
  return postGraphQL<T>(url, query, variables, await adminToken);
}

async function stock(url: string, product: string): Promise<number | undefined> {
  const res = await gql<{ product: { stock: number } | null }>(url, 'query($id: ID!) { product(id: $id) { stock } }', { id: product });
  return res.data?.product?.stock;
}

async function stopWith(spawned: Spawned, signal: NodeJS.Signals): Promise<number | null> {
  spawned.child.kill(signal);
  return exitOf(spawned.child);
}

describe('one private redis-server per data directory', () => {
  it('is shared by two servers started together on the directory, and stops with the last of them', { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const env = await privateEnv(dir);
    const [a, b] = await Promise.all([startMain(env), startMain(env)]).then((s) => s.map(track));
    expect(redisServersIn(dir)).toHaveLength(1);
    expect(`${a!.output()}\n${b!.output()}`).toMatch(/started a private redis-server/);
    expect(`${a!.output()}\n${b!.output()}`).toMatch(/using the private redis-server of/);

    // a restock through one is what the other sees
    const res = await gql(a!.url, 'mutation { restockProduct(productId: "shared", quantity: 7) { stock } }');
    expect(res.errors).toBeUndefined();
    expect(await stock(b!.url, 'shared')).toBe(7);

    // the first to stop leaves it running for the other
    expect(await stopWith(a!, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toHaveLength(1);
    expect(await stock(b!.url, 'shared')).toBe(7);

    // the last one stops it and removes the record
    expect(await stopWith(b!, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toEqual([]);
    expect(existsSync(path.join(dir, RECORD_FILE))).toBe(false);
  });

  it('after a SIGKILL of the server, the next start uses the Redis left running instead of adding one', { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const env = await privateEnv(dir);
    const first = track(await startMain(env));
    await gql(first.url, 'mutation { restockProduct(productId: "kept", quantity: 4) { stock } }');
    const [redisPid] = redisServersIn(dir);
    expect(redisPid).toBeDefined();
    await stopWith(first, 'SIGKILL');

    const second = track(await startMain(env));
    expect(second.output()).toContain(`using the private redis-server of ${dir}`);
    expect(redisServersIn(dir)).toEqual([redisPid]);
    expect(await stock(second.url, 'kept')).toBe(4);

    // the killed server's entry is cleaned up: the second, now the last, stops Redis
    expect(await stopWith(second, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toEqual([]);
  });

  it('replaces a stale record and lock whose processes are gone', { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const env = await privateEnv(dir);
    const gone = await deadPid();
    const closedPort = await freePort();
    writeFileSync(path.join(dir, RECORD_FILE), JSON.stringify({ pid: gone, port: closedPort, url: `redis://127.0.0.1:${closedPort}`, startedAt: new Date().toISOString() }));
    writeFileSync(path.join(dir, LOCK_FILE), String(gone));

    const server = track(await startMain(env));
    expect(server.output()).toContain('removing the stale private Redis record');
    const [redisPid] = redisServersIn(dir);
    expect((await readRecord(dir))?.pid).toBe(redisPid);
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const res = await gql(server.url, 'mutation { restockProduct(productId: "fresh", quantity: 1) { stock } }');
    expect(res.data).toEqual({ restockProduct: { stock: 1 } });
    expect(await stopWith(server, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toEqual([]);
  });

  it('does not mistake a pid now used by another program for the recorded redis-server or a user', { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const env = await privateEnv(dir);
    // this test's own pid: alive, but not the process that was recorded (another start time)
    const closedPort = await freePort();
    writeFileSync(path.join(dir, RECORD_FILE), JSON.stringify({ pid: process.pid, start: '1', port: closedPort, url: `redis://127.0.0.1:${closedPort}`, startedAt: new Date().toISOString() }));
    mkdirSync(path.join(dir, USERS_DIR));
    writeFileSync(path.join(dir, USERS_DIR, String(process.pid)), JSON.stringify({ start: '1' }));

    const server = track(await startMain(env));
    expect(server.output()).toContain('removing the stale private Redis record');
    expect(redisServersIn(dir)).toHaveLength(1);
    // the only real user leaves: Redis stops, although the stale entry's pid is alive
    expect(await stopWith(server, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toEqual([]);
  });

  it('when its redis-server dies, the next start replaces it on the same port and running servers reconnect', { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const env = await privateEnv(dir);
    const first = track(await startMain(env));
    const readyz = first.url.replace('/graphql', '/readyz');
    const record = await readRecord(dir);
    process.kill(record!.pid, 'SIGKILL');
    await expect.poll(async () => (await fetch(readyz)).status, { timeout: 10_000 }).toBe(503);

    const second = track(await startMain(env));
    expect(second.output()).toContain('removing the stale private Redis record');
    const replaced = await readRecord(dir);
    expect(replaced!.pid).not.toBe(record!.pid);
    expect(replaced!.port).toBe(record!.port);
    expect(redisServersIn(dir)).toEqual([replaced!.pid]);
    // the first server finds Redis again at its address, loads its functions, and shares the data
    await expect.poll(async () => (await fetch(readyz)).status, { timeout: 15_000 }).toBe(200);
    await gql(second.url, 'mutation { restockProduct(productId: "again", quantity: 2) { stock } }');
    expect(await stock(first.url, 'again')).toBe(2);

    expect(await stopWith(first, 'SIGTERM')).toBe(0);
    expect(await stopWith(second, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toEqual([]);
  });

  it('npm run worker uses the private Redis of the directory and keeps it while it runs', { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const env = await privateEnv(dir);
    const server = track(await startMain(env));
    const worker = track(spawnEntry(WORKER, { ...env, WORKER_TICK_MS: '50' }));
    await waitForOutput(worker, /scheduler worker running on/);
    expect(worker.output()).toContain(`using the private redis-server of ${dir}`);

    const define = await gql(server.url, 'mutation { defineStateMachine(input: {name: "lamp", initialState: "off", states: ["off", "on"], transitions: [{from: "off", to: ["on"]}]}) { version } }');
    expect(define.errors).toBeUndefined();
    await gql(server.url, 'mutation { startWorkflow(input: {id: "desk", machine: "lamp"}) { id } }');
    const scheduled = await gql<{ scheduleTransition: { id: string } }>(
      server.url,
      'mutation($at: DateTime!) { scheduleTransition(input: {workflowId: "desk", to: "on", runAt: $at}) { id } }',
      { at: new Date().toISOString() },
    );
    const id = scheduled.data!.scheduleTransition.id;
    // the server's own worker is off: only the worker process can apply it
    await expect
      .poll(async () => (await gql<any>(server.url, 'query($id: ID!) { scheduledTransition(id: $id) { status } }', { id })).data?.scheduledTransition?.status, { timeout: 15_000 })
      .toBe('DONE');

    // the server stops; the worker still uses Redis, so it keeps running until the worker stops too
    expect(await stopWith(server, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toHaveLength(1);
    expect(await stopWith(worker, 'SIGTERM')).toBe(0);
    expect(redisServersIn(dir)).toEqual([]);
  });

  it('npm run demo without ATOMFLOW_URL finds the server running on the directory', { timeout: 90_000 }, async () => {
    const dir = dataDir();
    const env = { ...(await privateEnv(dir)), WORKER_ENABLED: 'true', WORKER_TICK_MS: '50' };
    const server = track(await startMain(env));
    const demo = track(spawnEntry(DEMO, { DATA_DIR: dir, ATOMFLOW_TOKEN: await adminToken }));
    const code = await exitOf(demo.child);
    expect(code, demo.output()).toBe(0);
    expect(demo.output().split('\n')[0]).toMatch(new RegExp(`^atomflow demo against ${server.url.replace(/[.]/g, '\\.')} \\(run [0-9a-z]+\\)$`));
    expect(await stopWith(server, 'SIGTERM')).toBe(0);
  });
});
