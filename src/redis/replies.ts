/**
 * Calling a Redis Function and decoding its reply: the one place where raw replies become typed
 * values and error replies (`CODE human message`) become EngineErrors carrying their code.
 */
import type { Redis } from 'ioredis';
import { ENGINE_ERROR_CODES, EngineError, type EngineErrorCode } from '../engine/errors.js';
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

/** FCALL a write function; its reply is JSON. */
export async function fcall<T>(redis: Redis, name: string, keys: string[], args: (string | number)[]): Promise<T> {
  return timed(name, async () => decode<T>(await redis.call('FCALL', FUNCTION_PREFIX + name, keys.length, ...keys, ...args), name));
}

/** FCALL_RO a `no-writes` function (may run on a replica). */
export async function fcallReadOnly<T>(redis: Redis, name: string, keys: string[], args: (string | number)[]): Promise<T> {
  return timed(name, async () => decode<T>(await redis.call('FCALL_RO', FUNCTION_PREFIX + name, keys.length, ...keys, ...args), name));
}

/** The same FCALL_RO for many calls in one round trip; each result is a value or an EngineError. */
export async function fcallReadOnlyMany<T>(
  redis: Redis,
  name: string,
  calls: { keys: string[]; args: (string | number)[] }[],
): Promise<T[]> {
  if (calls.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const c of calls) pipeline.call('FCALL_RO', FUNCTION_PREFIX + name, c.keys.length, ...c.keys, ...c.args);
  // one pipeline is timed once: its latency is the round trip the caller waits for
  return timed(name, async () => {
    const results = (await pipeline.exec()) ?? [];
    return results.map(([err, reply]) => {
      if (err) throw toEngineError(err);
      return decode<T>(reply, name);
    });
  });
}
