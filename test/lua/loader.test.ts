/**
 * The function loader, against a redis-server of its own (it flushes and replaces libraries, which
 * the shared test server's other files rely on).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { FunctionLoadError, LUA_DIR, loadFunctions, readLibraries } from '../../src/redis/functions.js';
import { startPrivateRedis, type PrivateRedis } from '../setup/private-redis.js';
import { LIMITS } from '../../src/limits.js';
import { ID_PATTERN } from '../../src/engine/validation.js';

const LIBRARIES = ['atomflow_limits', 'atomflow_orders', 'atomflow_sagas', 'atomflow_scheduler', 'atomflow_workflows'];

let server: PrivateRedis;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  server = await startPrivateRedis();
  redis = new Redis(server.url);
  dir = await mkdtemp(path.join(os.tmpdir(), 'atomflow-lua-'));
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A copy of lua/ (libraries only: the included parts are always read from lua/include/). */
async function copyOfLuaDir(name: string): Promise<string> {
  const target = path.join(dir, name);
  await cp(LUA_DIR, target, { recursive: true });
  return target;
}

async function serverCode(library: string): Promise<string | undefined> {
  const reply = (await redis.call('FUNCTION', 'LIST', 'LIBRARYNAME', library, 'WITHCODE')) as unknown[][];
  const entry = reply.find((e) => e[1] === library);
  return entry ? String(entry[entry.indexOf('library_code') + 1]) : undefined;
}

describe('loadFunctions', () => {
  it('loads every library into an empty Redis, then leaves unchanged code alone', async () => {
    await redis.call('FUNCTION', 'FLUSH');
    const logged: string[] = [];
    const first = await loadFunctions(redis, { log: (l) => logged.push(l) });
    expect(first).toEqual({ loaded: LIBRARIES, unchanged: [], newerOnServer: [] });
    expect(logged[0]).toContain('loaded atomflow_limits, atomflow_orders, atomflow_sagas, atomflow_scheduler, atomflow_workflows');
    const second = await loadFunctions(redis);
    expect(second).toEqual({ loaded: [], unchanged: LIBRARIES, newerOnServer: [] });
  });

  it('replaces only the library whose code changed', async () => {
    await loadFunctions(redis);
    const changed = await copyOfLuaDir('changed');
    const file = path.join(changed, 'sagas.lua');
    await writeFile(file, `${await readFile(file, 'utf8')}\n-- a comment that changes the code\n`);
    const report = await loadFunctions(redis, { dir: changed });
    expect(report).toEqual({ loaded: ['atomflow_sagas'], unchanged: LIBRARIES.filter((l) => l !== 'atomflow_sagas'), newerOnServer: [] });
    expect(await serverCode('atomflow_sagas')).toContain('a comment that changes the code');
    // back to the real code: replaced again
    expect((await loadFunctions(redis)).loaded).toEqual(['atomflow_sagas']);
  });

  it('reports a Lua syntax error with the library name and its file and line, and loads nothing of it', async () => {
    const broken = await copyOfLuaDir('broken');
    await writeFile(path.join(broken, 'zz_broken.lua'), "#!lua name=atomflow_broken\nlocal LIBRARY_VERSION = '1'\nlocal x = = 2\n");
    const attempt = loadFunctions(redis, { dir: broken });
    await expect(attempt).rejects.toBeInstanceOf(FunctionLoadError);
    await expect(attempt).rejects.toThrow(/library atomflow_broken \(lua\/zz_broken\.lua\).*lua\/zz_broken\.lua:3:/);
    expect(await serverCode('atomflow_broken')).toBeUndefined();
  });

  it('refuses a file without the library line', async () => {
    const unnamed = await copyOfLuaDir('unnamed');
    await writeFile(path.join(unnamed, 'nameless.lua'), "redis.register_function('x', function() return 1 end)\n");
    await expect(loadFunctions(redis, { dir: unnamed })).rejects.toThrow('lua/nameless.lua: line 1 must be "#!lua name=<library>"');
  });

  it('lets each library report its own version', async () => {
    await loadFunctions(redis);
    for (const [fn, library] of [
      ['atomflow_workflows_version', 'atomflow_workflows'],
      ['atomflow_orders_version', 'atomflow_orders'],
      ['atomflow_sagas_version', 'atomflow_sagas'],
      ['atomflow_scheduler_version', 'atomflow_scheduler'],
      ['atomflow_limits_version', 'atomflow_limits'],
    ]) {
      const reply = JSON.parse(String(await redis.call('FCALL_RO', fn!, 0)));
      expect(reply).toEqual({ library, version: expect.stringMatching(/^\d+$/) });
    }
  });

  it('never replaces a newer library on the server with an older one, and replaces an older one', async () => {
    await loadFunctions(redis);
    const newer = await copyOfLuaDir('newer');
    const file = path.join(newer, 'sagas.lua');
    const code = await readFile(file, 'utf8');
    expect(code).toMatch(/^local LIBRARY_VERSION = '\d+'$/m);
    await writeFile(file, code.replace(/^local LIBRARY_VERSION = '\d+'$/m, "local LIBRARY_VERSION = '999'"));
    expect((await loadFunctions(redis, { dir: newer })).loaded).toEqual(['atomflow_sagas']);

    // this (older) code starts against the newer library: it stays
    const logged: string[] = [];
    const report = await loadFunctions(redis, { log: (l) => logged.push(l) });
    expect(report).toEqual({ loaded: [], unchanged: LIBRARIES.filter((l) => l !== 'atomflow_sagas'), newerOnServer: ['atomflow_sagas'] });
    expect(await serverCode('atomflow_sagas')).toContain("local LIBRARY_VERSION = '999'");
    expect(logged[0]).toContain('kept the newer version on the server of atomflow_sagas');

    // an older library on the server is replaced
    const older = await copyOfLuaDir('older');
    await writeFile(path.join(older, 'sagas.lua'), code.replace(/^local LIBRARY_VERSION = '\d+'$/m, "local LIBRARY_VERSION = '0'"));
    await redis.call('FUNCTION', 'DELETE', 'atomflow_sagas');
    await loadFunctions(redis, { dir: older });
    expect((await loadFunctions(redis)).loaded).toEqual(['atomflow_sagas']);
    expect(await serverCode('atomflow_sagas')).toBe((await readLibraries()).find((l) => l.name === 'atomflow_sagas')!.code);
  });

  it('refuses a library that declares no LIBRARY_VERSION', async () => {
    const unversioned = await copyOfLuaDir('unversioned');
    await writeFile(path.join(unversioned, 'zz.lua'), "#!lua name=atomflow_zz\nlocal x = 1\n");
    await expect(loadFunctions(redis, { dir: unversioned })).rejects.toThrow(/lua\/zz\.lua: declares no "local LIBRARY_VERSION/);
  });

  it('names every function atomflow_*, so another application may use the plain names on the same Redis', async () => {
    await redis.call('FUNCTION', 'FLUSH');
    await redis.call('FUNCTION', 'LOAD', "#!lua name=otherapp\nredis.register_function('wf_transition', function() return 'theirs' end)");
    await loadFunctions(redis);
    const reply = (await redis.call('FUNCTION', 'LIST')) as unknown[][];
    const names = reply.flatMap((entry) => {
      const library = String(entry[entry.indexOf('library_name') + 1]);
      const functions = entry[entry.indexOf('functions') + 1] as unknown[][];
      return functions.map((f) => [library, String(f[f.indexOf('name') + 1])]);
    });
    const ours = names.filter(([library]) => library!.startsWith('atomflow_'));
    expect(ours.length).toBeGreaterThan(20);
    for (const [, name] of ours) expect(name).toMatch(/^atomflow_/);
    expect(await redis.call('FCALL', 'wf_transition', 0)).toBe('theirs');
    await redis.call('FUNCTION', 'DELETE', 'otherapp');
  });

  it('composes each library from the parts it names: sagas carry core only, no workflow or order code', async () => {
    const libraries = await readLibraries();
    const byName = new Map(libraries.map((l) => [l.name, l]));
    expect(byName.get('atomflow_sagas')!.includes).toEqual(['core']);
    for (const name of ['atomflow_workflows', 'atomflow_orders', 'atomflow_scheduler']) {
      expect(byName.get(name)!.includes).toEqual(['core', 'orders', 'workflow']);
    }
    const sagas = byName.get('atomflow_sagas')!.code;
    expect(sagas).toContain('local function check_id(');
    expect(sagas).not.toContain('apply_refund');
    expect(sagas).not.toContain('apply_transition');
    expect(byName.get('atomflow_orders')!.code).toContain('local function apply_refund(');
  });

  it('writes the limits of src/limits.ts into every library, so Lua checks what the engine checks', async () => {
    for (const lib of await readLibraries()) {
      for (const [name, value] of Object.entries(LIMITS)) expect(lib.code).toContain(`local ${name} = ${value}\n`);
      expect(lib.code).toContain(`local ID_PATTERN_TEXT = '${ID_PATTERN.source}'`);
    }
    await loadFunctions(redis);
    const long = 'a'.repeat(129);
    await expect(redis.call('FCALL', 'atomflow_product_restock', 1, 'atomflow:{t}:stock:x', long, '1')).rejects.toThrow(
      `BAD_USER_INPUT product id must match ${ID_PATTERN.source}`,
    );
    expect(String(await redis.call('FCALL', 'atomflow_product_restock', 1, 'atomflow:{t}:stock:x', 'a'.repeat(128), '1'))).toContain('"stock":1');
  });

  it('maps a syntax error after the included parts back to the line of the library file', async () => {
    const broken = await copyOfLuaDir('broken-include');
    await writeFile(path.join(broken, 'zz.lua'), "#!lua name=atomflow_zz\n-- include: core, orders, workflow\nlocal LIBRARY_VERSION = '1'\nlocal x = = 2\n");
    await expect(loadFunctions(redis, { dir: broken })).rejects.toThrow(/lua\/zz\.lua:4:/);
    await writeFile(path.join(broken, 'zz.lua'), "#!lua name=atomflow_zz\n-- include: core, nothing\nlocal LIBRARY_VERSION = '1'\n");
    await expect(loadFunctions(redis, { dir: broken })).rejects.toThrow('lua/zz.lua: includes "nothing", but there is no lua/include/nothing.lua');
  });
});

