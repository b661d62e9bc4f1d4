import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // type-graphql loads graphql's CommonJS build; make vitest use the same one, or the schema it
    // builds comes "from another module or realm".
    alias: { graphql: require.resolve('graphql') },
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/redis-server.ts', 'test/setup/web-build.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Files share one private redis-server; each works in its own tenant, so they may run in parallel.
    fileParallelism: true,
  },
});
