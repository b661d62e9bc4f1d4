/**
 * REDIS_CLUSTER_NODES: what it accepts, and the one line a start prints when the cluster cannot be
 * used (nothing there, a Redis that is not a cluster node); then `npm start` and `npm run worker`
 * serving on the cluster of the run.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ConfigError, readConfig } from '../../src/config.js';
import { freePort, startPrivateRedis } from '../setup/private-redis.js';
import { exitOf, MAIN, spawnTracked, startMain, WORKER, waitForOutput, type Spawned } from '../setup/processes.js';
import { postGraphQL, TEST_JWT_SECRET, testToken } from '../api/harness.js';
import { uniqueTenant } from '../setup/helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function run(entry: string, env: Record<string, string>): Spawned {
  return spawnTracked(entry, env, cleanups);
}

async function oneLineFailure(env: Record<string, string>): Promise<string> {
  const spawned = run(MAIN, { PORT: '0', ...env });
  expect(await exitOf(spawned.child), spawned.output()).toBe(1);
  const lines = spawned.stderr().trimEnd().split('\n');
  expect(lines, spawned.stderr()).toHaveLength(1);
  return lines[0]!;
}

describe('REDIS_CLUSTER_NODES', () => {
  it('takes host:port seeds, and redis:// or rediss:// seeds whose credentials and TLS every node uses', () => {
    expect(readConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7001' }).redisCluster).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
      username: null,
      password: null,
      tls: false,
    });
    expect(readConfig({ REDIS_CLUSTER_NODES: 'rediss://app:p%40ss@a.example:6380,b.example:6380' }).redisCluster).toEqual({
      nodes: [
        { host: 'a.example', port: 6380 },
        { host: 'b.example', port: 6380 },
      ],
      username: 'app',
      password: 'p@ss',
      tls: true,
    });
    expect(readConfig({}).redisCluster).toBeNull();
  });

  it('refuses what cannot be right, naming the variable', () => {
    for (const [value, why] of [
      ['127.0.0.1', /needs a host and a port/],
      ['http://127.0.0.1:7000', /must start with redis:\/\/ or rediss:\/\//],
      ['redis://a:x@h:1,redis://a:y@h:2', /different credentials/],
      [' , ', /lists none/],
    ] as const) {
      expect(() => readConfig({ REDIS_CLUSTER_NODES: value })).toThrow(ConfigError);
      expect(() => readConfig({ REDIS_CLUSTER_NODES: value })).toThrow(why);
    }
    expect(() => readConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(/not both/);
  });

  it('a start with no cluster there: one line naming the cluster and why, the password hidden', { timeout: 30_000 }, async () => {
    const port = await freePort();
    expect(await oneLineFailure({ REDIS_CLUSTER_NODES: `redis://app:s3cret@127.0.0.1:${port}` })).toBe(
      `atomflow: cannot use the Redis cluster at 127.0.0.1:${port}: cannot reach Redis at redis://app:***@127.0.0.1:${port}: connection refused (nothing listens there)`,
    );
  });

  it('a start on a Redis that is not a cluster node: one line saying so', { timeout: 30_000 }, async () => {
    const plain = await startPrivateRedis();
    cleanups.push(() => plain.stop());
    const line = await oneLineFailure({ REDIS_CLUSTER_NODES: `127.0.0.1:${plain.port}` });
    expect(line).toMatch(new RegExp(`^atomflow: cannot use the Redis cluster at 127\\.0\\.0\\.1:${plain.port}: .*cluster support disabled`));
  });

  it('npm start and npm run worker serve on the cluster', { timeout: 60_000 }, async () => {
    const seeds = inject('redisClusterNodes')!;
    const tenant = uniqueTenant('main');
    const server = await startMain({ REDIS_CLUSTER_NODES: seeds, PORT: '0', WORKER_ENABLED: 'false', AUTH_JWT_SECRET: TEST_JWT_SECRET });
    cleanups.push(() => void server.child.kill('SIGTERM'));
    await waitForOutput(server, /redis: redis cluster [^;]*; scheduler worker off/);
    expect(server.output()).toContain(`redis: redis cluster ${seeds}; scheduler worker off`);
    const token = await testToken({ tenant });
    const restocked = await postGraphQL(server.url, 'mutation { restockProduct(productId: "p", quantity: 2) { stock } }', undefined, token);
    expect(restocked.data).toEqual({ restockProduct: { stock: 2 } });
    const worker = run(WORKER, { REDIS_CLUSTER_NODES: seeds, WORKER_TENANTS: tenant });
    await waitForOutput(worker, new RegExp(`scheduler worker running on redis cluster ${seeds.replace(/\./g, '\\.')} for tenants ${tenant}`));
  });
});
