/**
 * How errors reach clients, over HTTP and WebSocket alike: an EngineError's code becomes
 * `extensions.code` with its message; graphql's own errors (validation, variable coercion) keep
 * their codes; Redis being unreachable, loading or out of memory is SERVICE_UNAVAILABLE with
 * `extensions.retryable: true`; anything unexpected is INTERNAL_SERVER_ERROR with a generic message
 * and no stack trace (the details go to the server log). No message is longer than
 * MAX_MESSAGE_CHARS, so no error echoes more than that of a value a client sent (a 900 KB string in
 * an Int variable, say).
 */
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { unwrapResolverError } from '@apollo/server/errors';
import { EngineError } from '../engine/errors.js';
import type { Log } from '../log.js';
import { redisTrouble } from '../redis/replies.js';

/** Redis cannot serve right now; the same request may succeed later (HTTP 503, see unavailable.ts). */
export const SERVICE_UNAVAILABLE = 'SERVICE_UNAVAILABLE';

/** Longest message a client receives; longer ones are cut (quoted values first). */
export const MAX_MESSAGE_CHARS = 200;
/** Extensions that travel with their code (RATE_LIMITED: retryAfterMs; QUERY_TOO_COMPLEX: cost, limit). */
const KEPT_EXTENSIONS = ['retryAfterMs', 'cost', 'limit', 'retryable'];

/** Cuts quoted values to 40 characters, then the whole message to MAX_MESSAGE_CHARS. */
export function clipMessage(message: string): string {
  if (message.length <= MAX_MESSAGE_CHARS) return message;
  const quoted = message.replace(/"((?:[^"\\]|\\.){40})(?:[^"\\]|\\.)+"/g, '"$1…"');
  return quoted.length <= MAX_MESSAGE_CHARS ? quoted : `${quoted.slice(0, MAX_MESSAGE_CHARS - 1)}…`;
}

export interface ErrorFormatOptions {
  log?: Log;
  /** NODE_ENV=development: unexpected errors carry `extensions.stacktrace`. */
  development?: boolean;
}

export function formatGraphQLError(formatted: GraphQLFormattedError, error: unknown, options: ErrorFormatOptions = {}): GraphQLFormattedError {
  const result = formatError(formatted, error, options);
  return result.message.length > MAX_MESSAGE_CHARS ? { ...result, message: clipMessage(result.message) } : result;
}

function formatError(formatted: GraphQLFormattedError, error: unknown, options: ErrorFormatOptions): GraphQLFormattedError {
  const log = options.log ?? ((line: string) => console.error(line));
  let original = unwrapResolverError(error);
  // graphql-ws wraps what a subscription's event stream throws in a GraphQLError without a path
  if (original instanceof GraphQLError && !original.path && original.originalError instanceof EngineError) original = original.originalError;
  const trouble = redisTrouble(original);
  if (trouble) {
    const message = original instanceof EngineError ? original.message : `${trouble}; retry later`;
    return { message, locations: formatted.locations, path: formatted.path, extensions: { code: SERVICE_UNAVAILABLE, retryable: true } };
  }
  if (original instanceof EngineError) {
    if (original.code === 'INTERNAL' || original.code === 'STALE_KEYS') {
      log(`internal engine error: ${original.message}`, { level: 'error', code: original.code });
      return { ...formatted, message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } };
    }
    return { ...formatted, message: original.message, extensions: { ...original.details, code: original.code } };
  }
  const code = formatted.extensions?.code;
  const tokens = /Document contains more tha[nt] (\d+) tokens/.exec(formatted.message);
  if (tokens) {
    // graphql's parse option maxTokens (src/graphql/limits.ts) stopped a document too large to parse
    return { ...formatted, message: `the document has more than ${tokens[1]} tokens`, extensions: { code: 'QUERY_TOO_COMPLEX', limit: Number(tokens[1]) } };
  }
  if (typeof code === 'string' && code !== 'INTERNAL_SERVER_ERROR') {
    // graphql / Apollo / atomflow errors about the request itself; drop anything else
    const extensions: Record<string, unknown> = { code };
    for (const name of KEPT_EXTENSIONS) if (formatted.extensions?.[name] !== undefined) extensions[name] = formatted.extensions[name];
    return { ...formatted, extensions };
  }
  if (original instanceof GraphQLError && !original.originalError && !code) {
    return { ...formatted, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } };
  }
  const stack = original instanceof Error ? (original.stack ?? original.message) : String(original);
  // the stack goes into the log line's `err` field, one JSON string (one line)
  log(`unexpected error: ${original instanceof Error ? original.message : String(original)}`, { err: original });
  const extensions: Record<string, unknown> = { code: 'INTERNAL_SERVER_ERROR' };
  if (options.development) extensions.stacktrace = stack.split('\n');
  return { message: 'Internal server error', locations: formatted.locations, path: formatted.path, extensions };
}
