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
  /** Where to look for a running Redis when REDIS_URL is unset (LOCAL_REDIS_URL). */
  localRedisUrl: string;
  /** Where a Redis that atomflow starts itself keeps its append-only file. */
  dataDir: string;
  worker: { enabled: boolean; tickMs: number; leaseMs: number; tenants: string[]; maxAttempts: number };
  streamMaxLen: number;
  /** Bound of one subscription's queue of undelivered events, in bytes (SUBSCRIPTION_LAGGING past it). */
  subscriptionMaxQueuedBytes: number;
  /** Identical subscriptions share one execution per event (SUBSCRIPTION_SHARING). */
  subscriptionSharing: boolean;
  /** IDEMPOTENCY_TTL: how long a requestId is remembered, in ms. */
  idempotencyTtlMs: number;
  /** RETENTION_SETTLED: settled schedule entries and saga records expire after this, in ms. */
  retentionSettledMs: number;
  /** RETENTION_TERMINAL: terminal workflows leave the listings and expire after this, in ms; 0 off. */
  retentionTerminalMs: number;
  /** development shows stack traces in GraphQL errors; anything else hides them. */
  nodeEnv: string;
  logLevel: 'silent' | 'info';
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

export function readConfig(env: Env = process.env): Config {
  const redisUrl = redisUrlVar(env, 'REDIS_URL');
  const localRedisUrl = redisUrlVar(env, 'LOCAL_REDIS_URL') ?? 'redis://127.0.0.1:6379';
  const tenants = (env.WORKER_TENANTS ?? 'default').split(',').map((t) => t.trim()).filter(Boolean);
  if (tenants.length === 0 || tenants.some((t) => !ID_PATTERN.test(t))) {
    throw new ConfigError(`WORKER_TENANTS must be a comma-separated list of tenant ids, got "${env.WORKER_TENANTS}"`);
  }
  const logLevel = env.LOG_LEVEL?.trim() || 'info';
  if (logLevel !== 'info' && logLevel !== 'silent') throw new ConfigError(`LOG_LEVEL must be info or silent, got "${logLevel}"`);
  return {
    port: integer(env, 'PORT', 4000, 0, 65535),
    host: env.HOST?.trim() || '127.0.0.1',
    redisUrl,
    localRedisUrl,
    dataDir: env.DATA_DIR?.trim() || './data',
    worker: {
      enabled: boolean(env, 'WORKER_ENABLED', true),
      tickMs: integer(env, 'WORKER_TICK_MS', 250, 10, 60_000),
      leaseMs: integer(env, 'WORKER_LEASE_MS', 30_000, 100, 3_600_000),
      tenants,
      maxAttempts: integer(env, 'WORKER_MAX_ATTEMPTS', 5, 1, 1000),
    },
    streamMaxLen: integer(env, 'EVENT_STREAM_MAXLEN', 100_000, 1, 1_000_000_000),
    subscriptionMaxQueuedBytes: integer(env, 'SUBSCRIPTION_MAX_QUEUED_BYTES', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    subscriptionSharing: boolean(env, 'SUBSCRIPTION_SHARING', true),
    idempotencyTtlMs: duration(env, 'IDEMPOTENCY_TTL', 24 * 3_600_000, false),
    retentionSettledMs: duration(env, 'RETENTION_SETTLED', 7 * 86_400_000, false),
    retentionTerminalMs: duration(env, 'RETENTION_TERMINAL', 0, true),
    nodeEnv: env.NODE_ENV?.trim() || 'production',
    logLevel,
  };
}
