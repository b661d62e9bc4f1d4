/**
 * A cluster of its own with a replica per primary: the primary of a tenant's slot fails over to its
 * replica (CLUSTER FAILOVER) while orders go on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from 'ioredis';
import type { TestServer } from '../api/harness.js';
import { uniqueTenant } from '../setup/helpers.js';
import { startTestCluster, type TestCluster } from '../setup/redis-cluster.js';
import { ordersThrough, placeOf, serverOn } from './cluster.js';

let cluster: TestCluster;
const servers: TestServer[] = [];
beforeAll(async () => {
  cluster = await startTestCluster(3, 1);
}, 60_000);
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await cluster?.stop();
});

describe('a failover', () => {
  it("orders keep working, in order and with every event once, while the tenant's primary fails over to its replica", { timeout: 60_000 }, async () => {
    const tenant = uniqueTenant('failover');
    const t = await serverOn(cluster, servers, tenant);
    const { slot } = await placeOf(t.redis as unknown as Cluster, tenant);
    const primary = await cluster.ownerOf(slot);
    let promoted = primary;
    const { before } = await ordersThrough(t, async () => {
      promoted = await cluster.failover(slot);
    });
    expect(before).toBeGreaterThan(0);
    expect(promoted.port).not.toBe(primary.port);
    expect((await cluster.ownerOf(slot)).port).toBe(promoted.port);
  });
});
