/**
 * The one error type the engine raises. `code` is the stable first word of the Lua function's error
 * reply (or the validation code raised before Redis is called); the GraphQL layer copies it into
 * `extensions.code`.
 */
export const ENGINE_ERROR_CODES = [
  'BAD_USER_INPUT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'INVALID_TRANSITION',
  'STATE_CONFLICT',
  'VERSION_CONFLICT',
  'OUT_OF_STOCK',
  'INSUFFICIENT_FUNDS',
  'IDEMPOTENCY_CONFLICT',
  'EVENTS_TRIMMED',
  'SUBSCRIPTION_LAGGING',
] as const;

/**
 * Beyond the codes Lua answers: STALE_KEYS (retried by the engine), INTERNAL (a bug), and
 * SERVICE_UNAVAILABLE (Redis unreachable, loading or out of memory: retry later; see
 * src/redis/replies.ts, which classifies them).
 */
export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number] | 'STALE_KEYS' | 'INTERNAL' | 'SERVICE_UNAVAILABLE';

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  /** Machine-readable details a client acts on (e.g. the eventId to resume from), beside the code. */
  readonly details: Record<string, unknown> | undefined;
  constructor(code: EngineErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
    this.details = details;
  }
}

export function badInput(message: string): EngineError {
  return new EngineError('BAD_USER_INPUT', message);
}
