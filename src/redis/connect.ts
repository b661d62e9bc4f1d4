/**
 * Finds the Redis atomflow runs on:
 *   0. the Redis Cluster of REDIS_CLUSTER_NODES when set;
 *   1. REDIS_URL when set;
 *   2. otherwise 127.0.0.1:6379 if a Redis 7 or newer answers there;
 *   3. otherwise the private redis-server of DATA_DIR (append-only file on), started by the first
 *      atomflow process on that directory and shared by all of them (src/redis/private-redis.ts);
 *   4. otherwise a RedisUnavailableError naming both fixes.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { Cluster, Redis } from 'ioredis';
import type { RedisClusterConfig } from '../config.js';
import type { ClusterTarget, RedisTarget } from './client.js';
import { joinPrivateRedis } from './private-redis.js';

export const DEFAULT_LOCAL_REDIS = 'redis://127.0.0.1:6379';

export class RedisUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisUnavailableError';
  }
}

export interface ResolvedRedis {
  /** The one Redis' URL; on a cluster, the first seed's (one node of it). */
  url: string;
  /** What to connect to (src/redis/client.ts connectRedis): the URL, or the cluster's seeds. */
  target: RedisTarget;
  /** How it was found, for the start-up log. */
  source: 'REDIS_URL' | 'REDIS_CLUSTER_NODES' | 'local' | 'started' | 'shared';
  /** Private Redis only: tells other processes on the data directory where this server listens. */
  announce?(graphqlUrl: string): Promise<void>;
  /** Leaves a private redis-server (the last process to leave stops it); a no-op otherwise. */
  stop(): Promise<void>;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/**
 * Connects to `url` once and reads its version. Resolves with the Redis major version; rejects with
 * a RedisUnavailableError whose message is one line saying what answered (nothing, something that is
 * not Redis, a Redis that refuses us, or no answer in time).
 */
export async function checkRedis(url: string, timeoutMs = 3000): Promise<number> {
  const shown = redactUrl(url);
  const client = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let firstError: (Error & { code?: string }) | null = null;
  client.on('error', (err: Error) => (firstError ??= err));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisUnavailableError(`${shown} accepted a connection but did not answer like Redis within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const info = await Promise.race([client.connect().then(() => client.info('server')), timeout]);
    return Number((/redis_version:(\d+)/.exec(info) ?? [])[1] ?? 0);
  } catch (err) {
    if (err instanceof RedisUnavailableError) throw err;
    const cause: Error & { code?: string } = firstError ?? (err as Error);
    throw new RedisUnavailableError(describeConnectFailure(shown, cause));
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** `where` names what was tried: `Redis at <url>` or `the Redis cluster at <seeds>`; `shown` its address. */
function describeConnectFailure(shown: string, err: Error & { code?: string }, where = `Redis at ${shown}`): string {
  if (err.code === 'ECONNREFUSED') return `cannot reach ${where}: connection refused (nothing listens there)`;
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return `cannot reach ${where}: unknown host`;
  if (err.code === 'ETIMEDOUT' || err.code === 'EHOSTUNREACH') return `cannot reach ${where}: no answer (${err.code})`;
  if (err.name === 'ParserError' || /protocol error/i.test(err.message)) return `${shown} does not speak the Redis protocol: is it the address of a Redis server?`;
  if (/^(NOAUTH|WRONGPASS|NOPERM)/.test(err.message)) return `${where} refused atomflow: ${err.message.split('\n')[0]}`;
  return `cannot use ${where}: ${(err.message || err.name).split('\n')[0]}`;
}

/** The Redis major version answering at `url`, or null when nothing usable answers. */
export async function probeRedis(url: string, timeoutMs = 1000): Promise<number | null> {
  try {
    return await checkRedis(url, timeoutMs);
  } catch {
    return null;
  }
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

/** The seeds and node options of REDIS_CLUSTER_NODES. */
export function clusterTarget(config: RedisClusterConfig): ClusterTarget {
  return {
    seeds: config.nodes,
    nodeOptions: {
      ...(config.username ? { username: config.username } : {}),
      ...(config.password ? { password: config.password } : {}),
      ...(config.tls ? { tls: {} } : {}),
    },
  };
}

/**
 * Connects to the cluster once: every seed that answers must be Redis 7+, and the cluster must say
 * cluster_state:ok. Rejects with a RedisUnavailableError in one line otherwise.
 */
export async function checkCluster(target: ClusterTarget, timeoutMs = 5000): Promise<void> {
  const shown = target.seeds.map((s) => `${s.host}:${s.port}`).join(',');
  const cluster = new Cluster(target.seeds, {
    redisOptions: { ...target.nodeOptions, connectTimeout: timeoutMs, maxRetriesPerRequest: 0 },
    lazyConnect: true,
    clusterRetryStrategy: () => null,
  });
  // a node's own error (connection refused, refused credentials) says more than the cluster's
  let nodeError: (Error & { code?: string }) | null = null;
  let clusterError: Error | null = null;
  cluster.on('node error', (err: Error) => (nodeError ??= err));
  cluster.on('error', (err: Error) => (clusterError ??= err));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisUnavailableError(`the Redis cluster at ${shown} did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const check = async () => {
      await cluster.connect();
      const state = /cluster_state:(\w+)/.exec(String(await cluster.cluster('INFO')))?.[1];
      if (state !== 'ok') throw new RedisUnavailableError(`the Redis cluster at ${shown} is not serving (cluster_state:${state ?? 'unknown'})`);
      for (const node of cluster.nodes('master')) {
        const version = /redis_version:(\S+)/.exec(await node.info('server'))?.[1] ?? '0';
        if (Number(version.split('.')[0]) < 7) throw new RedisUnavailableError(`the Redis cluster node ${node.options.host}:${node.options.port} runs Redis ${version}; atomflow needs Redis 7 or newer`);
      }
    };
    await Promise.race([check(), timeout]);
  } catch (err) {
    if (err instanceof RedisUnavailableError) throw err;
    // ioredis says only "Connection is closed." of a node it cannot use: ask the first seed alone why
    const first = target.seeds[0]!;
    const url = new URL(`${target.nodeOptions.tls ? 'rediss' : 'redis'}://${first.host.includes(':') ? `[${first.host}]` : first.host}:${first.port}`);
    if (target.nodeOptions.username) url.username = encodeURIComponent(target.nodeOptions.username);
    if (target.nodeOptions.password) url.password = encodeURIComponent(target.nodeOptions.password);
    const why = await checkRedis(url.toString(), timeoutMs).then(
      () => null,
      (probe: Error) => probe.message,
    );
    if (why) throw new RedisUnavailableError(`cannot use the Redis cluster at ${shown}: ${why}`);
    const cause: Error & { code?: string } = nodeError ?? clusterError ?? (err as Error);
    throw new RedisUnavailableError(describeConnectFailure(shown, cause, `the Redis cluster at ${shown}`));
  } finally {
    clearTimeout(timer);
    cluster.disconnect();
  }
}

export async function resolveRedis(options: {
  redisCluster?: RedisClusterConfig | null;
  redisUrl: string | null;
  dataDir: string;
  pathEnv?: string;
  localUrl?: string;
  log?: (line: string) => void;
}): Promise<ResolvedRedis> {
  const log = options.log ?? (() => {});
  if (options.redisCluster) {
    const target = clusterTarget(options.redisCluster);
    await checkCluster(target);
    const first = target.seeds[0]!;
    return { url: `redis://${first.host.includes(':') ? `[${first.host}]` : first.host}:${first.port}`, target, source: 'REDIS_CLUSTER_NODES', stop: async () => {} };
  }
  if (options.redisUrl) {
    const major = await checkRedis(options.redisUrl);
    if (major < 7) throw new RedisUnavailableError(`REDIS_URL ${redactUrl(options.redisUrl)} runs Redis ${major}; atomflow needs Redis 7 or newer`);
    return { url: options.redisUrl, target: options.redisUrl, source: 'REDIS_URL', stop: async () => {} };
  }
  const localUrl = options.localUrl ?? DEFAULT_LOCAL_REDIS;
  const major = await probeRedis(localUrl);
  if (major !== null && major >= 7) return { url: localUrl, target: localUrl, source: 'local', stop: async () => {} };
  const binary = findOnPath('redis-server', options.pathEnv);
  const joined = await joinPrivateRedis({ dataDir: options.dataDir, binary, log });
  if (joined) return joined;
  const found = major === null ? 'nothing answers there' : `it runs Redis ${major}, and atomflow needs 7 or newer`;
  throw new RedisUnavailableError(
    `atomflow needs Redis 7 or newer. REDIS_URL is not set, ${localUrl} is not usable (${found}), and redis-server is not on PATH. ` +
      'Either set REDIS_URL to a Redis 7+ server (for example REDIS_URL=redis://127.0.0.1:6379), ' +
      'or install redis-server (for example: apt-get install redis-server) so atomflow can start its own.',
  );
}
