/** Helpers of the cluster tests: tenants placed on given primaries. */
import type { Cluster } from 'ioredis';
import { ownerOf, slotOf } from '../../src/redis/client.js';
import { tenantKeys } from '../../src/redis/keys.js';
import { uniqueTenant } from '../setup/helpers.js';

/** The hash slot of a tenant's keys, and the `host:port` of the primary the client sees owning it. */
export async function placeOf(cluster: Cluster, tenant: string): Promise<{ slot: number; owner: string }> {
  const slot = await slotOf(cluster, tenantKeys(tenant).events());
  return { slot, owner: ownerOf(cluster, slot) ?? '' };
}

/** `count` fresh tenants whose slots live on `count` different primaries. */
export async function tenantsOnDistinctPrimaries(cluster: Cluster, count: number, label = 'spread'): Promise<string[]> {
  const byOwner = new Map<string, string>();
  for (let tries = 0; byOwner.size < count; tries++) {
    if (tries > 1000) throw new Error(`found no ${count} tenants on distinct primaries`);
    const tenant = uniqueTenant(label);
    const { owner } = await placeOf(cluster, tenant);
    if (owner && !byOwner.has(owner)) byOwner.set(owner, tenant);
  }
  return [...byOwner.values()];
}
