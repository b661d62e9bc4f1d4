import { LOG_LEVELS, type LogFormat, type LogLevel } from './log.js';
import { ID_SYNTAX, syntaxPattern } from './limits.js';

const ID_PATTERN = syntaxPattern(ID_SYNTAX);

/**
 * Settings come from environment variables, read and validated here once. A bad value stops the
 * process at start with a message naming the variable.
 */
export interface Config {
  /** HTTP and WebSocket port; 0 picks a free one (tests). */
  port: number;
  host: string;
  /** REDIS_URL; when absent atomflow looks for a local Redis or starts its own (src/redis/connect.ts). */
  redisUrl: string | null;
  /** REDIS_CLUSTER_NODES: a Redis Cluster's seed nodes; when set, atomflow uses a cluster client (REDIS_URL must then be unset). */
  redisCluster: RedisClusterConfig | null;
  /** Where to look for a running Redis when REDIS_URL is unset (LOCAL_REDIS_URL). */
  localRedisUrl: string;
  /** Where a Redis that atomflow starts itself keeps its append-only file. */
  dataDir: string;
  /** tenants: WORKER_TENANTS, an optional filter; null applies every tenant that has due entries. */
  worker: { enabled: boolean; tickMs: number; leaseMs: number; tenants: string[] | null; maxAttempts: number };
  streamMaxLen: number;
  /** Bound of one subscription's queue of undelivered events, in bytes (SUBSCRIPTION_LAGGING past it). */
  subscriptionMaxQueuedBytes: number;
  /** Identical subscriptions share one execution per event (SUBSCRIPTION_SHARING). */
  subscriptionSharing: boolean;
  /** Run validated JSON POST operations without Apollo's request pipeline (src/graphql/direct-execution.ts). */
  httpDirectExecution: boolean;
  /** IDEMPOTENCY_TTL: how long a requestId is remembered, in ms. */
  idempotencyTtlMs: number;
  /** RETENTION_SETTLED: settled schedule entries and saga records expire after this, in ms. */
  retentionSettledMs: number;
  /** RETENTION_TERMINAL: terminal workflows leave the listings and expire after this, in ms; 0 off. */
  retentionTerminalMs: number;
  /** NODE_ENV, default development: development shows stack traces in GraphQL errors. */
  nodeEnv: string;
  /** NODE_ENV=production: no development secret, introspection and playground off by default. */
  production: boolean;
  /** LOG_LEVEL: pino levels, `silent` turns logs off. */
  logLevel: LogLevel;
  /** LOG_FORMAT: `json` (one object per line) or `pretty` (pino-pretty). */
  logFormat: LogFormat;
  /** GRAPHQL_PLAYGROUND: serve the playground at GET /graphql to browsers. Default: on unless NODE_ENV=production. */
  playground: boolean;
  auth: AuthConfig;
  /** Introspection on HTTP and WebSocket (GRAPHQL_INTROSPECTION; default: on unless production). */
  introspection: boolean;
  limits: LimitsConfig;
  /** Origins allowed to call from a browser (CORS_ORIGINS); also allowed to open the WebSocket. */
  corsOrigins: string[];
}

/** Seed nodes of a Redis Cluster, and what every node connection uses (from the first URL-form seed). */
export interface RedisClusterConfig {
  nodes: { host: string; port: number }[];
  username: string | null;
  password: string | null;
  /** rediss:// seeds: TLS to every node. */
  tls: boolean;
}

export interface AuthConfig {
  /** AUTH_JWT_SECRET: HS256. */
  secret: string | null;
  /** AUTH_JWT_PUBLIC_KEY: a PEM public key, RS256 or ES256. */
  publicKey: string | null;
  issuer: string | null;
  audience: string | null;
}

/** Bounds on what one request or connection may cost (src/graphql/limits.ts, src/server.ts). */
export interface LimitsConfig {
  maxCost: number;
  maxDepth: number;
  maxAliases: number;
  maxRootFields: number;
  maxMutationFields: number;
  wsMaxConnections: number;
  wsMaxSubscriptions: number;
  /** Token bucket per principal: tokens added per second (0: no rate limit) and bucket size. */
  ratePerSecond: number;
  rateBurst: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/** A duration: an integer with a unit (`500ms`, `30s`, `15m`, `24h`, `7d`; no unit: ms); `off` when allowed. */
function duration(env: Env, name: string, fallback: number, allowOff: boolean): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (allowOff && (value === 'off' || value === '0')) return 0;
  const match = /^(\d{1,15})(ms|s|m|h|d)?$/.exec(value);
  const ms = match ? Number(match[1]) * DURATION_UNITS[match[2] ?? 'ms']! : NaN;
  if (!(ms >= 1 && ms <= MAX_DURATION_MS)) {
    throw new ConfigError(
      `${name} must be a duration such as 30s, 24h or 7d (at most 10 years)${allowOff ? ', or off' : ''}, got "${raw}"`,
    );
  }
  return ms;
}

/** The engine settings of a config (src/engine/context.ts EngineOptions). */
export function engineOptions(config: Config) {
  return {
    streamMaxLen: config.streamMaxLen,
    idempotencyTtlMs: config.idempotencyTtlMs,
    retentionSettledMs: config.retentionSettledMs,
    retentionTerminalMs: config.retentionTerminalMs,
  };
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function redisUrlVar(env: Env, name: string): string | null {
  const value = env[name]?.trim() || null;
  if (value === null) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} must be a URL such as redis://127.0.0.1:6379, got "${value}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`${name} must start with redis:// or rediss://, got "${value}"`);
  }
  return value;
}

/**
 * REDIS_CLUSTER_NODES: comma-separated seeds, each `host:port` or a `redis://` / `rediss://` URL.
 * Credentials and TLS are those of the URL-form seeds (they must agree) and apply to every node the
 * cluster client finds, as REDIS_URL's do to its one server.
 */
function redisClusterVar(env: Env): RedisClusterConfig | null {
  const raw = env.REDIS_CLUSTER_NODES?.trim();
  if (!raw) return null;
  const fail = (why: string): never => {
    throw new ConfigError(`REDIS_CLUSTER_NODES must be comma-separated host:port seeds (or redis:// URLs) such as 10.0.0.1:7000,10.0.0.2:7000; ${why}`);
  };
  const nodes: RedisClusterConfig['nodes'] = [];
  let auth: { username: string | null; password: string | null; tls: boolean } | null = null;
  for (const seed of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    let url: URL;
    try {
      url = new URL(/^[a-z]+:\/\//i.test(seed) ? seed : `redis://${seed}`);
    } catch {
      return fail(`"${seed}" is not one`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') fail(`"${seed}" must start with redis:// or rediss://`);
    if (!url.hostname || !url.port || (url.pathname !== '' && url.pathname !== '/')) fail(`"${seed}" needs a host and a port, and nothing after them`);
    nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) });
    if (!/^[a-z]+:\/\//i.test(seed)) continue;
    const these = { username: decodeURIComponent(url.username) || null, password: decodeURIComponent(url.password) || null, tls: url.protocol === 'rediss:' };
    if (auth && JSON.stringify(auth) !== JSON.stringify(these)) fail('its URL-form seeds have different credentials or schemes');
    auth = these;
  }
  if (nodes.length === 0) fail('it lists none');
  return { nodes, ...(auth ?? { username: null, password: null, tls: false }) };
}

export function readConfig(env: Env = process.env): Config {
  const redisUrl = redisUrlVar(env, 'REDIS_URL');
  const redisCluster = redisClusterVar(env);
  if (redisUrl && redisCluster) throw new ConfigError('set REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster), not both');
  const localRedisUrl = redisUrlVar(env, 'LOCAL_REDIS_URL') ?? 'redis://127.0.0.1:6379';
  const tenants = (env.WORKER_TENANTS ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  if (tenants.some((t) => !ID_PATTERN.test(t))) {
    throw new ConfigError(`WORKER_TENANTS must be a comma-separated list of tenant ids, got "${env.WORKER_TENANTS}"`);
  }
  const nodeEnv = env.NODE_ENV?.trim() || 'development';
  const production = nodeEnv === 'production';
  const auth = authConfig(env, production);
  const logLevel = (env.LOG_LEVEL?.trim() || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  const logFormat = (env.LOG_FORMAT?.trim() || 'json') as LogFormat;
  if (logFormat !== 'json' && logFormat !== 'pretty') throw new ConfigError(`LOG_FORMAT must be json or pretty, got "${logFormat}"`);
  // "outside production" is NODE_ENV other than production, unset included
  const introspection = boolean(env, 'GRAPHQL_INTROSPECTION', !production);
  // the playground follows introspection (its docs need it) unless GRAPHQL_PLAYGROUND says otherwise
  const playground = boolean(env, 'GRAPHQL_PLAYGROUND', introspection);
  return {
    port: integer(env, 'PORT', 4000, 0, 65535),
    host: env.HOST?.trim() || '127.0.0.1',
    redisUrl,
    redisCluster,
    localRedisUrl,
    dataDir: env.DATA_DIR?.trim() || './data',
    worker: {
      enabled: boolean(env, 'WORKER_ENABLED', true),
      tickMs: integer(env, 'WORKER_TICK_MS', 250, 10, 60_000),
      leaseMs: integer(env, 'WORKER_LEASE_MS', 30_000, 100, 3_600_000),
      tenants: tenants.length ? tenants : null,
      maxAttempts: integer(env, 'WORKER_MAX_ATTEMPTS', 5, 1, 1000),
    },
    streamMaxLen: integer(env, 'EVENT_STREAM_MAXLEN', 100_000, 1, 1_000_000_000),
    subscriptionMaxQueuedBytes: integer(env, 'SUBSCRIPTION_MAX_QUEUED_BYTES', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    subscriptionSharing: boolean(env, 'SUBSCRIPTION_SHARING', true),
    httpDirectExecution: boolean(env, 'HTTP_DIRECT_EXECUTION', true),
    idempotencyTtlMs: duration(env, 'IDEMPOTENCY_TTL', 24 * 3_600_000, false),
    retentionSettledMs: duration(env, 'RETENTION_SETTLED', 7 * 86_400_000, false),
    retentionTerminalMs: duration(env, 'RETENTION_TERMINAL', 0, true),
    nodeEnv,
    production,
    logLevel,
    logFormat,
    playground,
    auth,
    introspection,
    limits: {
      maxCost: integer(env, 'MAX_QUERY_COST', 5_000, 1, 1_000_000),
      maxDepth: integer(env, 'MAX_QUERY_DEPTH', 8, 1, 100),
      maxAliases: integer(env, 'MAX_ALIASES', 20, 0, 1_000),
      maxRootFields: integer(env, 'MAX_ROOT_FIELDS', 20, 1, 1_000),
      maxMutationFields: integer(env, 'MAX_MUTATION_FIELDS', 10, 1, 1_000),
      wsMaxConnections: integer(env, 'WS_MAX_CONNECTIONS', 1_000, 1, 1_000_000),
      wsMaxSubscriptions: integer(env, 'WS_MAX_SUBSCRIPTIONS', 20, 1, 10_000),
      ratePerSecond: integer(env, 'RATE_LIMIT_PER_S', 50, 0, 1_000_000),
      rateBurst: integer(env, 'RATE_LIMIT_BURST', 100, 1, 1_000_000),
    },
    corsOrigins: corsOrigins(env),
  };
}

/** One key is required in production; outside it, none means the development secret (src/auth/). */
function authConfig(env: Env, production: boolean): AuthConfig {
  const secret = env.AUTH_JWT_SECRET?.trim() || null;
  const publicKey = env.AUTH_JWT_PUBLIC_KEY?.trim().replace(/\\n/g, '\n') || null;
  if (secret && publicKey) throw new ConfigError('set AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY, not both');
  if (secret !== null && Buffer.byteLength(secret) < 32) {
    throw new ConfigError(`AUTH_JWT_SECRET must be at least 32 bytes (HS256), got ${Buffer.byteLength(secret)}`);
  }
  if (publicKey !== null && !publicKey.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new ConfigError('AUTH_JWT_PUBLIC_KEY must be a PEM public key (-----BEGIN PUBLIC KEY-----), RSA or EC P-256');
  }
  if (production && !secret && !publicKey) {
    throw new ConfigError('AUTH_JWT_SECRET (or AUTH_JWT_PUBLIC_KEY) must be set when NODE_ENV=production');
  }
  return { secret, publicKey, issuer: env.AUTH_JWT_ISSUER?.trim() || null, audience: env.AUTH_JWT_AUDIENCE?.trim() || null };
}

function corsOrigins(env: Env): string[] {
  const list = (env.CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  for (const origin of list) {
    let url: URL | null = null;
    try {
      url = new URL(origin);
    } catch {
      /* reported below */
    }
    if (!url || !/^https?:$/.test(url.protocol) || url.origin !== origin) {
      throw new ConfigError(`CORS_ORIGINS must be comma-separated origins such as https://app.example.com, got "${origin}"`);
    }
  }
  return list;
}
