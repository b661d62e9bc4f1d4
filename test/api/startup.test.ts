/**
 * A start that cannot succeed says why in one line on stderr, exits 1, prints no stack trace, and
 * leaves nothing running (no redis-server it started, no listening socket).
 */
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort, startPrivateRedis } from '../setup/private-redis.js';
import { redisUrl } from '../setup/helpers.js';
import { exitOf, MAIN, redisServersIn, spawnTracked, WORKER, type Spawned } from '../setup/processes.js';
import { RECORD_FILE } from '../../src/redis/private-redis.js';
import { createServer } from '../../src/server.js';
import { StartupError } from '../../src/startup.js';
import { testConfig } from './harness.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function run(entry: string, env: Record<string, string>): Spawned {
  return spawnTracked(entry, env, cleanups);
}

/** Expects exit code 1 and exactly one line on stderr, without a stack trace; returns that line. */
async function failsWithOneLine(spawned: Spawned): Promise<string> {
  expect(await exitOf(spawned.child), spawned.output()).toBe(1);
  const lines = spawned.stderr().trimEnd().split('\n');
  expect(lines, spawned.stderr()).toHaveLength(1);
  expect(lines[0]).not.toMatch(/^\s+at |Error:|Please report this/);
  return lines[0]!;
}

/** A TCP port held open by the test: `kind` says what answers there. */
async function occupiedPort(kind: 'http' | 'silent'): Promise<number> {
  const server: net.Server = kind === 'http' ? http.createServer((_req, res) => res.end('hello')) : net.createServer(() => {});
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const socket of sockets) socket.destroy();
  }));
  return (server.address() as net.AddressInfo).port;
}

describe('start-up failures', () => {
  it('an unreachable REDIS_URL: one line naming the address', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const line = await failsWithOneLine(run(MAIN, { REDIS_URL: `redis://127.0.0.1:${port}`, PORT: '0' }));
    expect(line).toBe(`atomflow: cannot reach Redis at redis://127.0.0.1:${port}: connection refused (nothing listens there)`);
  });

  it('the worker with an unreachable REDIS_URL: the same one line', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const line = await failsWithOneLine(run(WORKER, { REDIS_URL: `redis://127.0.0.1:${port}` }));
    expect(line).toBe(`atomflow worker: cannot reach Redis at redis://127.0.0.1:${port}: connection refused (nothing listens there)`);
  });

  it('a REDIS_URL where something else than Redis answers: one line saying so', { timeout: 30_000 }, async () => {
    const port = await occupiedPort('http');
    const line = await failsWithOneLine(run(MAIN, { REDIS_URL: `redis://127.0.0.1:${port}`, PORT: '0' }));
    expect(line).toBe(`atomflow: redis://127.0.0.1:${port} does not speak the Redis protocol: is it the address of a Redis server?`);
  });

  it('a REDIS_URL where nothing ever answers: one line after the time-out', { timeout: 30_000 }, async () => {
    const port = await occupiedPort('silent');
    const line = await failsWithOneLine(run(MAIN, { REDIS_URL: `redis://127.0.0.1:${port}`, PORT: '0' }));
    expect(line).toMatch(new RegExp(`^atomflow: redis://127\\.0\\.0\\.1:${port} accepted a connection but did not answer like Redis within \\d+ ms$`));
  });

  it('a password in REDIS_URL is not printed', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const line = await failsWithOneLine(run(MAIN, { REDIS_URL: `redis://user:s3cret@127.0.0.1:${port}`, PORT: '0' }));
    expect(line).not.toContain('s3cret');
    expect(line).toContain(`redis://user:***@127.0.0.1:${port}`);
  });

  it('a port already in use: one line naming the port', { timeout: 30_000 }, async () => {
    const port = await occupiedPort('silent');
    const line = await failsWithOneLine(run(MAIN, { REDIS_URL: redisUrl(), PORT: String(port) }));
    expect(line).toBe(`atomflow: port ${port} is already in use on 127.0.0.1: stop what listens there or set PORT to another port`);
  });

  it('a port already in use with a private Redis: no redis-server is left behind', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-inuse-'));
    cleanups.push(() => {
      for (const pid of redisServersIn(dir)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    const port = await occupiedPort('silent');
    const spawned = run(MAIN, { LOCAL_REDIS_URL: `redis://127.0.0.1:${await freePort()}`, DATA_DIR: dir, PORT: String(port) });
    const line = await failsWithOneLine(spawned);
    expect(line).toContain(`port ${port} is already in use`);
    expect(spawned.output()).toContain('started a private redis-server'); // it got that far, and undid it
    expect(redisServersIn(dir)).toEqual([]);
    expect(existsSync(path.join(dir, RECORD_FILE))).toBe(false);
  });

  it('no Redis and no redis-server on PATH: one line naming both fixes, and DATA_DIR left alone', { timeout: 30_000 }, async () => {
    const bin = mkdtempSync(path.join(os.tmpdir(), 'atomflow-path-'));
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const parent = mkdtempSync(path.join(os.tmpdir(), 'atomflow-nodata-'));
    cleanups.push(() => {
      rmSync(bin, { recursive: true, force: true });
      rmSync(parent, { recursive: true, force: true });
    });
    const dir = path.join(parent, 'data');
    const spawned = run(MAIN, { PATH: bin, LOCAL_REDIS_URL: `redis://127.0.0.1:${await freePort()}`, DATA_DIR: dir, PORT: '0' });
    const line = await failsWithOneLine(spawned);
    expect(line).toMatch(/^atomflow: atomflow needs Redis 7 or newer\. REDIS_URL is not set, .* set REDIS_URL .* install redis-server/);
    expect(existsSync(dir)).toBe(false);
  });

  it('createServer on a port in use rejects with a StartupError and releases its Redis connections', async () => {
    const port = await occupiedPort('silent');
    const own = await startPrivateRedis(); // its own: nobody else's clients come and go there
    cleanups.push(() => own.stop());
    const admin = new Redis(own.url);
    cleanups.push(() => admin.disconnect());
    const clientCount = async () => String(await admin.call('CLIENT', 'LIST')).trim().split('\n').length;
    expect(await clientCount()).toBe(1);
    await expect(createServer(testConfig({ port, redisUrl: own.url }))).rejects.toBeInstanceOf(StartupError);
    await expect.poll(clientCount, { timeout: 5000 }).toBe(1);
  });
});
