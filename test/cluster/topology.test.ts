/**
 * A cluster of its own (this file changes its topology): a primary added and a tenant's slot moved
 * onto it while orders go on, and the scheduler worker applying due entries of tenants on every
 * primary.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis, type Cluster } from 'ioredis';
import type { TestServer } from '../api/harness.js';
import { uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';
import { startTestCluster, type TestCluster } from '../setup/redis-cluster.js';
import { ordersThrough, placeOf, serverOn, tenantsOnDistinctPrimaries } from './cluster.js';

let cluster: TestCluster;
const servers: TestServer[] = [];
beforeAll(async () => {
  cluster = await startTestCluster(3);
}, 60_000);
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await cluster?.stop();
});

function serverOnOwnCluster(tenant: string, worker?: { enabled: boolean; tenants: null; tickMs: number }): Promise<TestServer> {
  return serverOn(cluster, servers, tenant, worker);
}

async function librariesOn(port: number): Promise<string[]> {
  const node = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    const list = (await node.call('FUNCTION', 'LIST')) as unknown[][];
    return list.map((entry) => String(entry[entry.indexOf('library_name') + 1])).sort();
  } finally {
    node.disconnect();
  }
}

describe('a cluster whose topology changes', () => {
  it("orders keep working, in order and with every event once, while the tenant's slot moves onto a primary added meanwhile", { timeout: 60_000 }, async () => {
    const tenant = uniqueTenant('moving');
    const t = await serverOnOwnCluster(tenant);
    const added = await cluster.addPrimary();
    expect(await librariesOn(added.port)).toEqual([]); // nobody loaded anything there yet
    const { slot } = await placeOf(t.redis as unknown as Cluster, tenant);

    const { before, during } = await ordersThrough(t, () => cluster.moveSlot(slot, added));
    expect(before).toBeGreaterThan(0);
    expect(during).toBeGreaterThan(before); // orders went on while the keys moved
    expect((await cluster.ownerOf(slot)).port).toBe(added.port);
    // atomflow loaded its functions on the new primary by itself
    expect((await librariesOn(added.port)).filter((name) => name.startsWith('atomflow_')).length).toBeGreaterThan(0);
  });

  it('the scheduler worker applies due entries of tenants on every primary, with no WORKER_TENANTS', { timeout: 30_000 }, async () => {
    const host = await serverOnOwnCluster(uniqueTenant('worker'), { enabled: true, tenants: null, tickMs: 50 });
    const tenants = await tenantsOnDistinctPrimaries(host.redis as unknown as Cluster, 3, 'due');
    const engine = host.server.engine;
    const entries = await Promise.all(
      tenants.map(async (tenant) => {
        await engine.workflows.defineMachine(tenant, documentMachine('doc'));
        await engine.workflows.start(tenant, { id: 'w', machine: 'doc' });
        const entry = await engine.scheduler.schedule(tenant, { workflowId: 'w', to: 'review', runAt: new Date(Date.now() + 200) });
        return { tenant, id: entry.id };
      }),
    );
    for (const { tenant, id } of entries) {
      await expect.poll(async () => (await engine.scheduler.get(tenant, id))?.status, { timeout: 10_000 }).toBe('DONE');
      expect((await engine.workflows.get(tenant, 'w'))?.state).toBe('review');
    }
  });
});
