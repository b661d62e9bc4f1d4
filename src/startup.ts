/**
 * How a process that fails to start says so (npm start, npm run worker): one line on stderr and
 * exit code 1, naming what went wrong and what to do.
 */
import { ConfigError } from './config.js';
import { RedisUnavailableError } from './redis/connect.js';
import { FunctionLoadError } from './redis/functions.js';
import { redisTrouble } from './redis/replies.js';

/** A start-up failure whose message is the whole story (an address in use, say). */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/**
 * The line a failed start prints. Only an error nobody foresaw adds its stack trace, and only with NODE_ENV=development.
 */
export function startupFailureLine(err: unknown, development = false): string {
  if (err instanceof ConfigError || err instanceof RedisUnavailableError || err instanceof FunctionLoadError || err instanceof StartupError) {
    return err.message.split('\n')[0]!;
  }
  const trouble = redisTrouble(err);
  if (trouble) return `${trouble} (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
  if (development && err instanceof Error && err.stack) return `unexpected error at start: ${err.stack}`;
  return `unexpected error at start: ${message}`;
}

