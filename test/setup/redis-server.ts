/**
 * vitest global setup: starts a private redis-server on a free loopback port, with no persistence,
 * for the whole run, and stops it at the end. Tests reach it through inject('redisUrl') and never
 * touch 127.0.0.1:6379 or any user data.
 */
import type { TestProject } from 'vitest/node';
import { startPrivateRedis, type PrivateRedis } from './private-redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisPort: number;
  }
}

let server: PrivateRedis | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startPrivateRedis();
  project.provide('redisUrl', server.url);
  project.provide('redisPort', server.port);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
