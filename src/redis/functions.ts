/**
 * Loads the Redis Function libraries in lua/ at start-up.
 *
 * Each `lua/<area>.lua` is one library (`#!lua name=atomflow_<area>` on line 1) and names on line 2
 * the shared parts it needs (`-- include: core, orders, workflow`, files of lua/include/). The loader
 * inserts after line 1 the limits of src/limits.ts as Lua constants, then those parts in that order,
 * so every library has the same helpers without hand-kept copies and only the ones it uses, then
 * loads the library with FUNCTION LOAD REPLACE only when the code on the server differs from it. Redis older than 7 and Lua compile errors fail fast, naming the library.
 *
 * Versions: each library declares `local LIBRARY_VERSION = '<integer>'`. A library on the server
 * with a higher version is never replaced (two atomflow versions on one Redis: the newer one keeps
 * its functions instead of both replacing each other at every start); the same version with other
 * code is replaced (a development change: bump the version with every release that changes Lua).
 *
 * On a Redis Cluster each primary holds its own functions: they are loaded on every primary (slot-less
 * ones included), at start and again when the topology changes or a call meets a primary without
 * them (src/redis/replies.ts retries such a call once after loading).
 */
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { isCluster, onEveryPrimary, type RedisClient } from './client.js';
import { luaLimits } from '../limits.js';

export const LUA_DIR = fileURLToPath(new URL('../../lua/', import.meta.url));
const INCLUDE_DIR = path.join(LUA_DIR, 'include');
const INCLUDE_LINE = /^-- include: ([a-z]+(?:, [a-z]+)*)\s*$/;

/** Where a range of the composed code's lines came from, to map Redis' line numbers back. */
interface Segment {
  /** First line of the range in the composed code (1-based). */
  start: number;
  lines: number;
  /** The file shown in messages, and the line in it of the range's first line. */
  source: string;
  sourceLine: number;
}

export interface LibrarySource {
  name: string;
  file: string;
  code: string;
  /** The shared parts of lua/include/ it includes, in order. */
  includes: string[];
  segments: Segment[];
  /** LIBRARY_VERSION of the library. */
  version: number;
}

export interface LoadReport {
  loaded: string[];
  unchanged: string[];
  /** Libraries left as they are because the server holds a newer version of them. */
  newerOnServer: string[];
}

const VERSION_PATTERN = /^local LIBRARY_VERSION = '(\d{1,9})'$/m;

/** The LIBRARY_VERSION a library's code declares; null when it declares none. */
export function libraryVersion(code: string): number | null {
  const match = VERSION_PATTERN.exec(code);
  return match ? Number(match[1]) : null;
}

export class FunctionLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FunctionLoadError';
  }
}

/**
 * Reads lua/*.lua and composes each library's code: line 1, the limits (src/limits.ts), the parts
 * its line 2 includes (always read from lua/include/), then the rest of the file.
 */
export async function readLibraries(dir = LUA_DIR): Promise<LibrarySource[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.lua')).sort();
  const parts = new Map<string, string>();
  const libraries: LibrarySource[] = [];
  for (const file of files) {
    const text = await readFile(path.join(dir, file), 'utf8');
    const lines = text.split('\n');
    const shebang = lines[0]!;
    const match = /^#!lua name=([A-Za-z0-9_]+)\s*$/.exec(shebang);
    if (!match) throw new FunctionLoadError(`lua/${file}: line 1 must be "#!lua name=<library>"`);
    const body = lines.slice(1).join('\n');
    const version = libraryVersion(body);
    if (version === null) throw new FunctionLoadError(`lua/${file}: declares no "local LIBRARY_VERSION = '<integer>'"`);
    const includes = INCLUDE_LINE.exec(lines[1] ?? '')?.[1]?.split(', ') ?? [];
    const chunks: { text: string; source: string; sourceLine: number }[] = [
      { text: shebang, source: `lua/${file}`, sourceLine: 1 },
      { text: luaLimits(), source: 'src/limits.ts (Lua constants)', sourceLine: 1 },
    ];
    for (const part of includes) {
      if (!parts.has(part)) {
        try {
          parts.set(part, await readFile(path.join(INCLUDE_DIR, `${part}.lua`), 'utf8'));
        } catch {
          throw new FunctionLoadError(`lua/${file}: includes "${part}", but there is no lua/include/${part}.lua`);
        }
      }
      chunks.push({ text: parts.get(part)!.replace(/\n$/, ''), source: `lua/include/${part}.lua`, sourceLine: 1 });
    }
    chunks.push({ text: body, source: `lua/${file}`, sourceLine: 2 });
    const segments: Segment[] = [];
    let start = 1;
    for (const chunk of chunks) {
      const count = chunk.text.split('\n').length;
      segments.push({ start, lines: count, source: chunk.source, sourceLine: chunk.sourceLine });
      start += count;
    }
    libraries.push({ name: match[1]!, file, code: chunks.map((c) => c.text).join('\n'), includes, segments, version });
  }
  return libraries;
}

/** Rewrites Redis' `user_function:<line>:` into the file and line the code came from. */
function sourceLocations(message: string, lib: LibrarySource): string {
  return message.replace(/user_function:(\d+):/g, (all, n: string) => {
    const line = Number(n);
    const segment = lib.segments.find((s) => line >= s.start && line < s.start + s.lines);
    return segment ? `${segment.source}:${segment.sourceLine + line - segment.start}:` : all;
  });
}

export async function assertRedisVersion(redis: Redis): Promise<string> {
  const info = await redis.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '0';
  const major = Number(version.split('.')[0]);
  if (!(major >= 7)) {
    throw new FunctionLoadError(`atomflow needs Redis 7 or newer for Redis Functions; the server runs ${version}`);
  }
  return version;
}

/** The code of every library on the server (FUNCTION LIST WITHCODE), by library name. */
async function serverLibraries(redis: Redis): Promise<Map<string, string>> {
  const reply = (await redis.call('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][];
  const byName = new Map<string, string>();
  for (const entry of reply) {
    const fields = new Map<string, unknown>();
    for (let i = 0; i < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1]);
    byName.set(String(fields.get('library_name')), String(fields.get('library_code')));
  }
  return byName;
}

export async function loadFunctions(
  client: RedisClient,
  options: { dir?: string; log?: (line: string) => void } = {},
): Promise<LoadReport> {
  const libraries = await readLibraries(options.dir);
  const reports = await onEveryPrimary(client, async (node, address) => {
    const report = await loadOnNode(node, libraries);
    options.log?.(`redis functions${isCluster(client) ? ` on ${address}` : ''}: ${describeReport(report)}`);
    return report;
  });
  // what any node needed (one server: its report)
  const union = (pick: (r: LoadReport) => string[]) => [...new Set(reports.flatMap(pick))];
  return { loaded: union((r) => r.loaded), unchanged: union((r) => r.unchanged), newerOnServer: union((r) => r.newerOnServer) };
}

function describeReport(report: LoadReport): string {
  const newer = report.newerOnServer.length ? `; kept the newer version on the server of ${report.newerOnServer.join(', ')}` : '';
  return `loaded ${report.loaded.join(', ') || 'none'}; unchanged ${report.unchanged.join(', ') || 'none'}${newer}`;
}

async function loadOnNode(redis: Redis, libraries: LibrarySource[]): Promise<LoadReport> {
  await assertRedisVersion(redis);
  const onServer = await serverLibraries(redis);
  const report: LoadReport = { loaded: [], unchanged: [], newerOnServer: [] };
  for (const lib of libraries) {
    const serverCode = onServer.get(lib.name);
    if (serverCode === lib.code) {
      report.unchanged.push(lib.name);
      continue;
    }
    const serverVersion = serverCode === undefined ? null : libraryVersion(serverCode);
    if (serverVersion !== null && serverVersion > lib.version) {
      report.newerOnServer.push(lib.name);
      continue;
    }
    try {
      await redis.call('FUNCTION', 'LOAD', 'REPLACE', lib.code);
    } catch (err) {
      const reason = sourceLocations(err instanceof Error ? err.message : String(err), lib);
      throw new FunctionLoadError(`Redis rejected library ${lib.name} (lua/${lib.file}): ${reason}`);
    }
    report.loaded.push(lib.name);
  }
  return report;
}

/** Loads done or under way, per client: callers that meet a missing function at once share one load. */
const reloads = new WeakMap<RedisClient, Promise<unknown>>();

/**
 * Loads the functions again (on every primary), once for all the calls that ask meanwhile. For a call
 * that answered `Function not found`: a primary added to the cluster, or a Redis restarted empty.
 */
export function reloadFunctions(client: RedisClient, log?: (line: string) => void): Promise<unknown> {
  let pending = reloads.get(client);
  if (!pending) {
    pending = loadFunctions(client, { log }).finally(() => reloads.delete(client));
    reloads.set(client, pending);
  }
  return pending;
}
