import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

/**
 * API test files that cannot run on a Redis Cluster, each for a reason of its own (README, "Testing
 * on a cluster"): they are about one Redis process, or talk to one Redis with a plain connection.
 */
const NOT_ON_A_CLUSTER = [
  // atomflow starting, sharing and stopping its own private redis-server in DATA_DIR
  'test/api/private-redis.test.ts',
  // start-up failures of REDIS_URL (one Redis) and a private redis-server; CLIENT LIST of one server
  'test/api/startup.test.ts',
  // stops and restarts one redis-server, a private redis-server, and processes started with REDIS_URL
  'test/api/lifecycle.test.ts',
  // CONFIG SET maxmemory and a stopped server: one redis-server of its own
  'test/api/unavailable.test.ts',
  // the relay on its own, fed with classic PUBLISH over a plain connection to one Redis
  'test/api/relay.test.ts',
  // builds its config from REDIS_URL itself (one Redis by construction)
  'test/api/webui.test.ts',
];


export default defineConfig({
  resolve: {
    // type-graphql loads graphql's CommonJS build; make vitest use the same one, or the schema it
    // builds comes "from another module or realm".
    alias: { graphql: require.resolve('graphql') },
  },
  test: {
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Files share one private redis-server; each works in its own tenant, so they may run in parallel.
    fileParallelism: true,
    projects: [
      {
        extends: true,
        test: {
          name: 'redis',
          include: ['test/**/*.test.ts'],
          exclude: ['test/cluster/**'],
          globalSetup: ['test/setup/redis-server.ts', 'test/setup/web-build.ts'],
        },
      },
      {
        // the API suite again, on a 3-primary Redis Cluster on loopback (REDIS_CLUSTER_NODES)
        extends: true,
        test: {
          name: 'cluster',
          include: ['test/api/**/*.test.ts', 'test/cluster/**/*.test.ts'],
          exclude: NOT_ON_A_CLUSTER,
          globalSetup: ['test/setup/redis-cluster-global.ts', 'test/setup/web-build.ts'],
        },
      },
    ],
  },
});
