/**
 * Starts a throw-away redis-server on a free loopback port (no RDB, no AOF), checks it is Redis 7 or
 * newer, and stops it on request. Used by the global setup and by tests that need a server of their
 * own (for example to stop it and watch /readyz turn 503).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';

export interface PrivateRedis {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** SIGTERM to a child process, resolved once it has exited (at once when it already has). */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPing(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      const info = await client.info('server');
      const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '0';
      if (Number(version.split('.')[0]) < 7) throw new Error(`tests need redis-server 7 or newer, found ${version}`);
      client.disconnect();
      return;
    } catch (err) {
      lastError = err;
      client.disconnect();
      if (err instanceof Error && err.message.startsWith('tests need')) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`redis-server on port ${port} did not answer: ${String(lastError)}`);
}

export async function startPrivateRedis(port?: number): Promise<PrivateRedis> {
  const chosen = port ?? (await freePort());
  const child = spawn(
    'redis-server',
    ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.on('error', () => {});
  await waitForPing(chosen, child, 10_000);
  return {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    process: child,
    stop: () => stopChild(child),
  };
}
