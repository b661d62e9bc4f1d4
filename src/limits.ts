/**
 * The limits and id/name syntax that both sides check, written once: the engines check them before
 * calling Redis (src/engine/validation.ts and the area engines import them), and the Lua functions
 * check them again: the loader writes them as Lua constants at the top of every library
 * (`luaLimits`, src/redis/functions.ts). This module imports nothing.
 */
export const LIMITS = {
  /** Metadata of a workflow, a transition or a scheduled entry, as JSON. */
  MAX_METADATA_BYTES: 16_384,
  /** Money in integer cents; 10^13: Lua numbers are doubles and cjson keeps 14 significant digits. */
  MAX_MONEY_CENTS: 10_000_000_000_000,
  MAX_INT32: 2_147_483_647,
  MAX_STATES: 64,
  MAX_TRANSITIONS: 256,
  MAX_SAGA_STEPS: 64,
  /** Saga hash fields and set members, in bytes. */
  MAX_SAGA_FIELD_BYTES: 1024,
  /** Saga HSET values, in bytes. */
  MAX_SAGA_VALUE_BYTES: 16_384,
  /** The largest time a JavaScript Date can hold, in ms. */
  MAX_RUN_AT_MS: 8_640_000_000_000_000,
  /** Scheduled entries per claim. */
  MAX_CLAIM: 1000,
  /** The longest retention or TTL: 10 years, in ms. */
  MAX_RETENTION_MS: 315_360_000_000,
} as const;

export interface Syntax {
  /** Characters allowed first and after, as the inside of a regular expression character class. */
  first: string;
  rest: string;
  maxLength: number;
}

/** Ids (workflows, orders, products, accounts, sagas, entries, tenants, requestIds). */
export const ID_SYNTAX: Syntax = { first: 'A-Za-z0-9', rest: 'A-Za-z0-9_.-', maxLength: 128 };
/** Names (machines, states). */
export const NAME_SYNTAX: Syntax = { first: 'A-Za-z', rest: 'A-Za-z0-9_-', maxLength: 64 };

export function syntaxPattern(s: Syntax): RegExp {
  return new RegExp(`^[${s.first}][${s.rest}]{0,${s.maxLength - 1}}$`);
}

/** The same class for a Lua pattern: a literal '-' (last in the class) is written '%-'. */
function luaClass(chars: string): string {
  return chars.endsWith('-') ? `${chars.slice(0, -1)}%-` : chars;
}

const luaString = (text: string) => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** Lua constants for every limit and syntax above (the loader puts them first in every library). */
export function luaLimits(): string {
  const lines = ['-- Limits and id/name syntax from src/limits.ts, written here by the loader (src/redis/functions.ts).'];
  for (const [name, value] of Object.entries(LIMITS)) lines.push(`local ${name} = ${value}`);
  for (const [prefix, s] of [['ID', ID_SYNTAX], ['NAME', NAME_SYNTAX]] as const) {
    lines.push(`local ${prefix}_MAX_LENGTH = ${s.maxLength}`);
    lines.push(`local ${prefix}_LUA_PATTERN = ${luaString(`^[${luaClass(s.first)}][${luaClass(s.rest)}]*$`)}`);
    lines.push(`local ${prefix}_PATTERN_TEXT = ${luaString(syntaxPattern(s).source)}`);
  }
  return lines.join('\n');
}
