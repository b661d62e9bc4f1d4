/**
 * The function loader, against a redis-server of its own (it flushes and replaces libraries, which
 * the shared test server's other files rely on).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { FunctionLoadError, LUA_DIR, loadFunctions } from '../../src/redis/functions.js';
import { startPrivateRedis, type PrivateRedis } from '../setup/private-redis.js';

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

/** A copy of lua/ (libraries only: the prelude is always read from lua/include/). */
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
    expect(first).toEqual({ loaded: LIBRARIES, unchanged: [] });
    expect(logged[0]).toContain('loaded atomflow_limits, atomflow_orders, atomflow_sagas, atomflow_scheduler, atomflow_workflows');
    const second = await loadFunctions(redis);
    expect(second).toEqual({ loaded: [], unchanged: LIBRARIES });
  });

  it('replaces only the library whose code changed', async () => {
    await loadFunctions(redis);
    const changed = await copyOfLuaDir('changed');
    const file = path.join(changed, 'sagas.lua');
    await writeFile(file, `${await readFile(file, 'utf8')}\n-- a comment that changes the code\n`);
    const report = await loadFunctions(redis, { dir: changed });
    expect(report).toEqual({ loaded: ['atomflow_sagas'], unchanged: LIBRARIES.filter((l) => l !== 'atomflow_sagas') });
    expect(await serverCode('atomflow_sagas')).toContain('a comment that changes the code');
    // back to the real code: replaced again
    expect((await loadFunctions(redis)).loaded).toEqual(['atomflow_sagas']);
  });

  it('reports a Lua syntax error with the library name and its file and line, and loads nothing of it', async () => {
    const broken = await copyOfLuaDir('broken');
    await writeFile(path.join(broken, 'zz_broken.lua'), "#!lua name=atomflow_broken\nlocal ok = 1\nlocal x = = 2\n");
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
      ['workflows_version', 'atomflow_workflows'],
      ['orders_version', 'atomflow_orders'],
      ['sagas_version', 'atomflow_sagas'],
      ['scheduler_version', 'atomflow_scheduler'],
      ['limits_version', 'atomflow_limits'],
    ]) {
      const reply = JSON.parse(String(await redis.call('FCALL_RO', fn!, 0)));
      expect(reply).toEqual({ library, version: expect.stringMatching(/^\d+$/) });
    }
  });
});
