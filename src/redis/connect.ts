/**
 * Finds the Redis atomflow runs on:
 *   1. REDIS_URL when set;
 *   2. otherwise 127.0.0.1:6379 if a Redis 7 or newer answers there;
 *   3. otherwise a private redis-server started here (append-only file on, data under DATA_DIR),
 *      stopped when atomflow stops;
 *   4. otherwise a RedisUnavailableError naming both fixes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';

export const DEFAULT_LOCAL_REDIS = 'redis://127.0.0.1:6379';

export class RedisUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisUnavailableError';
  }
}

export interface ResolvedRedis {
  url: string;
  /** How it was found, for the start-up log. */
  source: 'REDIS_URL' | 'local' | 'started';
  /** Stops a redis-server atomflow started; a no-op otherwise. */
  stop(): Promise<void>;
}

/** The Redis major version answering at `url`, or null when nothing answers. */
export async function probeRedis(url: string, timeoutMs = 1000): Promise<number | null> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    const info = await client.info('server');
    return Number((/redis_version:(\d+)/.exec(info) ?? [])[1] ?? 0);
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function startRedisServer(binary: string, dataDir: string, log: (line: string) => void): Promise<ResolvedRedis> {
  const dir = path.resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const child: ChildProcess = spawn(
    binary,
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--daemonize', 'no'],
    { stdio: 'ignore' },
  );
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const failed = await Promise.race([spawnError, new Promise<null>((r) => setTimeout(() => r(null), 100))]);
    if (failed) throw new RedisUnavailableError(`could not start ${binary}: ${failed.message}`);
    if (child.exitCode !== null) throw new RedisUnavailableError(`${binary} exited with code ${child.exitCode} at start`);
    const major = await probeRedis(url, 500);
    if (major !== null) {
      if (major < 7) {
        child.kill('SIGTERM');
        throw new RedisUnavailableError(`${binary} is Redis ${major}; atomflow needs Redis 7 or newer`);
      }
      break;
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new RedisUnavailableError(`${binary} did not answer on port ${port} within 10 s`);
    }
  }
  log(`started a private redis-server on ${url} (append-only file in ${dir})`);
  return {
    url,
    source: 'started',
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM'); // redis-server flushes its append-only file on SIGTERM
      await exited;
    },
  };
}

/** Finds an executable on PATH (or the given PATH), or null. */
export function findOnPath(binary: string, pathEnv = process.env.PATH ?? ''): string | null {
  for (const dir of pathEnv.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, binary);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return null;
}

export async function resolveRedis(options: {
  redisUrl: string | null;
  dataDir: string;
  pathEnv?: string;
  localUrl?: string;
  log?: (line: string) => void;
}): Promise<ResolvedRedis> {
  const log = options.log ?? (() => {});
  if (options.redisUrl) return { url: options.redisUrl, source: 'REDIS_URL', stop: async () => {} };
  const localUrl = options.localUrl ?? DEFAULT_LOCAL_REDIS;
  const major = await probeRedis(localUrl);
  if (major !== null && major >= 7) return { url: localUrl, source: 'local', stop: async () => {} };
  const binary = findOnPath('redis-server', options.pathEnv);
  if (binary) return startRedisServer(binary, options.dataDir, log);
  const found = major === null ? 'nothing answers there' : `it runs Redis ${major}, and atomflow needs 7 or newer`;
  throw new RedisUnavailableError(
    `atomflow needs Redis 7 or newer. REDIS_URL is not set, ${localUrl} is not usable (${found}), and redis-server is not on PATH. ` +
      'Either set REDIS_URL to a Redis 7+ server (for example REDIS_URL=redis://127.0.0.1:6379), ' +
      'or install redis-server (for example: apt-get install redis-server) so atomflow can start its own.',
  );
}
