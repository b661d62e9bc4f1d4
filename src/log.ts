/**
 * Logs: one JSON object per line on stdout (pino), or human-readable lines with LOG_FORMAT=pretty
 * (pino-pretty). The one logging module of the project: every call site takes a `Log`, a function
 * `log(message, fields?)`, so a test can pass `(line) => lines.push(line)` and LOG_LEVEL=silent
 * turns everything off.
 *
 * Fields are added to the JSON object. Two are special: `level` ('debug' | 'info' | 'warn' |
 * 'error', default info) and `err` (an Error: its stack goes into the object as one JSON string, so
 * a stack never spans lines; pass it only for unexpected errors).
 */
import pino, { type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'pretty';

export interface LogFields {
  level?: 'debug' | 'info' | 'warn' | 'error';
  err?: unknown;
  [key: string]: unknown;
}

export type Log = (message: string, fields?: LogFields) => void;

/** Serializes an error into plain fields; the stack is one string (JSON escapes its newlines). */
export function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { type: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}), stack: err.stack ?? err.message };
  }
  return { message: String(err) };
}

export function createLogger(level: LogLevel = 'info', format: LogFormat = 'json', destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (format === 'pretty') {
    return pino(options, pinoPretty({ sync: true, colorize: false, translateTime: 'SYS:standard', ignore: 'pid', destination: destination ?? 1 }));
  }
  if (destination) return pino(options, destination);
  // Asynchronous writes: a synchronous write of every request's line was an eighth of the server's
  // CPU under load. Lines still go out at once (no minimum length), and whatever is pending is
  // written before the process exits.
  const stdout = pino.destination({ dest: 1, sync: false });
  destinations.add(stdout);
  process.once('exit', () => {
    try {
      stdout.flushSync();
    } catch {
      // stdout already gone: nothing to save
    }
  });
  return pino(options, stdout);
}

const destinations = new Set<ReturnType<typeof pino.destination>>();

/** Resolves once every line logged so far is written (call it before process.exit). */
export async function flushLogs(): Promise<void> {
  await Promise.all(
    [...destinations].map(
      (destination) => new Promise<void>((resolve) => destination.flush(() => resolve())),
    ),
  );
}

/** A Log writing through a pino logger. */
export function logTo(logger: Logger): Log {
  return (message, fields) => {
    if (!fields) {
      logger.info(message);
      return;
    }
    const { level = fields.err !== undefined ? 'error' : 'info', err, ...rest } = fields;
    // pino's err serializer keeps an Error's type, message, code and stack (one JSON string)
    const object = err === undefined ? rest : { ...rest, err: err instanceof Error ? err : errorFields(err) };
    logger[level](object, message);
  };
}

export function createLog(level: LogLevel = 'info', format: LogFormat = 'json'): Log {
  if (level === 'silent') return () => {};
  return logTo(createLogger(level, format));
}
