/**
 * How errors reach clients, over HTTP and WebSocket alike: an EngineError's code becomes
 * `extensions.code` with its message; graphql's own errors (validation, variable coercion) keep
 * their codes; Redis being unreachable, loading or out of memory is SERVICE_UNAVAILABLE with
 * `extensions.retryable: true`; anything unexpected is INTERNAL_SERVER_ERROR with a generic message and no stack
 * trace (the details go to the server log).
 */
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { unwrapResolverError } from '@apollo/server/errors';
import { EngineError } from '../engine/errors.js';
import { redisTrouble } from '../redis/replies.js';

/** Redis cannot serve right now; the same request may succeed later (HTTP 503, see unavailable.ts). */
export const SERVICE_UNAVAILABLE = 'SERVICE_UNAVAILABLE';

export interface ErrorFormatOptions {
  log?: (line: string) => void;
  /** NODE_ENV=development: unexpected errors carry `extensions.stacktrace`. */
  development?: boolean;
}

export function formatGraphQLError(formatted: GraphQLFormattedError, error: unknown, options: ErrorFormatOptions = {}): GraphQLFormattedError {
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
      log(`internal engine error: ${original.message}`);
      return { ...formatted, message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } };
    }
    return { ...formatted, message: original.message, extensions: { ...original.details, code: original.code } };
  }
  const code = formatted.extensions?.code;
  if (typeof code === 'string' && code !== 'INTERNAL_SERVER_ERROR') {
    // graphql / Apollo errors about the request itself; drop anything beyond the code
    return { ...formatted, extensions: { code } };
  }
  if (original instanceof GraphQLError && !original.originalError && !code) {
    return { ...formatted, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } };
  }
  const stack = original instanceof Error ? (original.stack ?? original.message) : String(original);
  log(`unexpected error: ${stack}`);
  const extensions: Record<string, unknown> = { code: 'INTERNAL_SERVER_ERROR' };
  if (options.development) extensions.stacktrace = stack.split('\n');
  return { message: 'Internal server error', locations: formatted.locations, path: formatted.path, extensions };
}
