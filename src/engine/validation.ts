/**
 * Input rules shared by every engine. Everything is checked here before Redis is called, and the
 * Lua functions check the same rules again (lua/include/core.lua): both read them from src/limits.ts.
 */
import { ID_SYNTAX, LIMITS, NAME_SYNTAX, syntaxPattern } from '../limits.js';
import { badInput } from './errors.js';

export const ID_PATTERN = syntaxPattern(ID_SYNTAX);
export const NAME_PATTERN = syntaxPattern(NAME_SYNTAX);
export const { MAX_METADATA_BYTES, MAX_MONEY_CENTS, MAX_INT32 } = LIMITS;
export const MAX_PAGE_SIZE = 100;

export function assertId(value: unknown, what: string): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw badInput(`${what} must match ${ID_PATTERN.source}`);
  }
  return value;
}

export function assertName(value: unknown, what: string): string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw badInput(`${what} must match ${NAME_PATTERN.source}`);
  }
  return value;
}

export function assertInt(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw badInput(`${what} must be an integer from ${min} to ${max}`);
  }
  return value;
}

export function assertPageSize(value: number | undefined, fallback: number): number {
  return assertInt(value ?? fallback, 'first', 1, MAX_PAGE_SIZE);
}

export type JsonObject = { [key: string]: unknown };

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Metadata goes to Lua as [keyJson, valueJson] pairs: Lua merges and stores the texts as they are,
 * so nested `[]` stay arrays and big numbers keep their digits (cjson would change both).
 */
export function metadataPairs(value: unknown, what = 'metadata'): string {
  if (value === undefined || value === null) return '[]';
  if (!isJsonObject(value)) throw badInput(`${what} must be a JSON object`);
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch {
    throw badInput(`${what} is not serialisable JSON`);
  }
  if (Buffer.byteLength(text) > MAX_METADATA_BYTES) {
    throw badInput(`${what} exceeds ${MAX_METADATA_BYTES} bytes of JSON`);
  }
  const pairs = Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [JSON.stringify(k), JSON.stringify(v)]);
  return JSON.stringify(pairs);
}

/** Rebuilds an object from stored [keyJson, valueJson] pairs. */
export function metadataFromPairs(pairs: unknown): JsonObject {
  if (!Array.isArray(pairs) || pairs.length === 0) return {};
  return JSON.parse(`{${pairs.map(([k, v]: [string, string]) => `${k}:${v}`).join(',')}}`) as JsonObject;
}

/** cjson encodes an empty Lua table as `{}`; a field that is a list reads back as []. */
export function asList<T>(value: unknown): T[] {
  return Array.isArray(value) ? (value as T[]) : [];
}

/** Opaque page cursors: base64url of the position the engine resumes from. */
export function encodeCursor(position: string | number): string {
  return Buffer.from(String(position), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | null | undefined): string {
  if (cursor === undefined || cursor === null || cursor === '') return '';
  if (cursor.length > 512 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw badInput('after is not a valid cursor');
  return Buffer.from(cursor, 'base64url').toString('utf8');
}

export function decodeOffsetCursor(cursor: string | null | undefined): number {
  const text = decodeCursor(cursor);
  if (text === '') return 0;
  if (!/^\d{1,9}$/.test(text)) throw badInput('after is not a valid cursor');
  return Number(text);
}
