/**
 * Calling a Redis Function and decoding its reply: the one place where raw replies become typed
 * values and error replies (`CODE human message`) become EngineErrors carrying their code.
 */
import type { RedisClient } from './client.js';
import { reloadFunctions } from './functions.js';
import { ENGINE_ERROR_CODES, EngineError, type EngineErrorCode } from '../core/errors.js';
import { redisFunctionDuration, redisFunctionErrors } from '../metrics.js';

const KNOWN_CODES = new Set<string>([...ENGINE_ERROR_CODES, 'STALE_KEYS']);

/**
 * Redis function names are global to the server, and a shared Redis may hold other applications'
 * libraries: every atomflow function is registered as `atomflow_<name>` (lua/include/core.lua,
 * register), and the engines call it by `<name>`.
 */
export const FUNCTION_PREFIX = 'atomflow_';

/**
 * Redis error replies that mean "not now" rather than "never": the request may succeed unchanged
 * once Redis has loaded its data, freed memory, finished a slow script or a failover.
 */
const TRANSIENT_REPLIES: Record<string, string> = {
  LOADING: 'Redis is loading its data set',
  OOM: 'Redis is out of memory and refuses writes',
  BUSY: 'Redis is busy running a script',
  MASTERDOWN: 'the Redis primary is down',
  READONLY: 'Redis is a read-only replica (failover in progress?)',
  TRYAGAIN: 'Redis asked to try again',
  CLUSTERDOWN: 'the Redis cluster is down',
};

/** Socket-level failures: Redis cannot be reached at all. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/**
 * Why Redis cannot serve right now (unreachable, loading, out of memory, ...), or null when `err` is
 * something else (a bug, a function's own error reply). The one place that tells Redis trouble apart
 * from bugs: replies here, the GraphQL error format and the worker's log all ask it.
 */
export function redisTrouble(err: unknown): string | null {
  if (err instanceof EngineError) return err.code === 'SERVICE_UNAVAILABLE' ? err.message : null;
  if (!(err instanceof Error)) return null;
  const code = (err as { code?: unknown }).code;
  if (err.name === 'MaxRetriesPerRequestError' || (typeof code === 'string' && CONNECTION_CODES.has(code))) {
    return 'Redis is unreachable';
  }
  if (err.message === 'Connection is closed.' || err.message.startsWith("Stream isn't writeable")) return 'Redis is unreachable';
  if (err.name === 'ReplyError') {
    const reason = TRANSIENT_REPLIES[err.message.split(' ', 1)[0]!];
    if (reason) return reason;
  }
  return null;
}

/** Turns an ioredis ReplyError from a function into an EngineError; anything else passes through. */
export function toEngineError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof EngineError) return err;
  const trouble = redisTrouble(err);
  if (trouble) return new EngineError('SERVICE_UNAVAILABLE', `${trouble}; retry later`);
  const message = err.message;
  const space = message.indexOf(' ');
  const code = space > 0 ? message.slice(0, space) : message;
  if (KNOWN_CODES.has(code)) {
    return new EngineError(code as EngineErrorCode, message.slice(space + 1));
  }
  return err;
}

/** Times one call into atomflow_redis_function_duration_seconds and counts its failure by code. */
async function timed<T>(name: string, call: () => Promise<T>): Promise<T> {
  const end = redisFunctionDuration.startTimer({ function: name });
  try {
    return await call();
  } catch (err) {
    const converted = toEngineError(err);
    redisFunctionErrors.inc({ function: name, code: converted instanceof EngineError ? converted.code : 'UNEXPECTED' });
    throw converted;
  } finally {
    end();
  }
}

function decode<T>(reply: unknown, name: string): T {
  if (typeof reply !== 'string') throw new EngineError('INTERNAL', `function ${name} answered a non-JSON reply`);
  return JSON.parse(reply) as T;
}

/**
 * A call that met a primary without atomflow's functions (added to the cluster, or restarted empty)
 * ran nothing there: load them (every primary) and run it once more.
 */
function isFunctionMissing(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError' && /^ERR Function not found/.test(err.message);
}

async function retryIfFunctionMissing<T>(redis: RedisClient, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (!isFunctionMissing(err)) throw err;
    await reloadFunctions(redis);
    return call();
  }
}

/** FCALL a write function; its reply is JSON. */
export async function fcall<T>(redis: RedisClient, name: string, keys: string[], args: (string | number)[]): Promise<T> {
  return timed(name, async () =>
    decode<T>(await retryIfFunctionMissing(redis, () => redis.call('FCALL', FUNCTION_PREFIX + name, keys.length, ...keys, ...args)), name),
  );
}

/** FCALL_RO a `no-writes` function (may run on a replica). */
export async function fcallReadOnly<T>(redis: RedisClient, name: string, keys: string[], args: (string | number)[]): Promise<T> {
  return timed(name, async () =>
    decode<T>(await retryIfFunctionMissing(redis, () => redis.call('FCALL_RO', FUNCTION_PREFIX + name, keys.length, ...keys, ...args)), name),
  );
}

/** The same FCALL_RO for many calls in one round trip; each result is a value or an EngineError. */
export async function fcallReadOnlyMany<T>(
  redis: RedisClient,
  name: string,
  calls: { keys: string[]; args: (string | number)[] }[],
): Promise<T[]> {
  if (calls.length === 0) return [];
  const run = async () => {
    const pipeline = redis.pipeline();
    for (const c of calls) pipeline.call('FCALL_RO', FUNCTION_PREFIX + name, c.keys.length, ...c.keys, ...c.args);
    const results = (await pipeline.exec()) ?? [];
    const missing = results.find(([err]) => isFunctionMissing(err));
    if (missing) throw missing[0];
    return results;
  };
  // one pipeline is timed once: its latency is the round trip the caller waits for
  return timed(name, async () => {
    const results = await retryIfFunctionMissing(redis, run);
    return results.map(([err, reply]) => {
      if (err) throw toEngineError(err);
      return decode<T>(reply, name);
    });
  });
}
