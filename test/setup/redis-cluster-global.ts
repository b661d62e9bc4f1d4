/**
 * vitest global setup of the cluster run (the `api-cluster` project of vitest.config.ts): a
 * 3-primary Redis Cluster on loopback for the whole run, stopped at the end. The harness and the
 * helpers see `redisClusterNodes` and connect to the cluster (REDIS_CLUSTER_NODES); `redisUrl` is its
 * first node, for the few things that talk to one node.
 */
import type { TestProject } from 'vitest/node';
import { startTestCluster, type TestCluster } from './redis-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** REDIS_CLUSTER_NODES of the cluster run; undefined in the one-Redis run. */
    redisClusterNodes: string | undefined;
  }
}

let cluster: TestCluster | undefined;

export async function setup(project: TestProject): Promise<void> {
  cluster = await startTestCluster(3);
  const first = cluster.nodes[0]!;
  project.provide('redisUrl', `redis://${first.address}`);
  project.provide('redisPort', first.port);
  project.provide('redisClusterNodes', cluster.seeds());
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
}
