/**
 * Every Redis key and pub/sub channel name atomflow uses, built in this one module.
 *
 * Each key of a tenant carries the tenant as its hash tag (`atomflow:{acme}:wf:o-1`), so every key a
 * function touches lives in one hash slot and the libraries work unchanged on Redis Cluster. The Lua
 * functions never build key names: they receive them in KEYS from the engines, which get them here.
 */
import { createHash } from 'node:crypto';
import { assertId, assertName } from '../engine/validation.js';

export const KEY_PREFIX = 'atomflow';

export function tenantKeys(tenant: string) {
  assertId(tenant, 'tenant');
  const base = `${KEY_PREFIX}:{${tenant}}`;
  const keys = {
    tenant,
    base,
    machine: (name: string) => `${base}:machine:${assertName(name, 'machine')}`,
    machineNames: () => `${base}:machines`,
    workflow: (id: string) => `${base}:wf:${assertId(id, 'workflow id')}`,
    workflowHistory: (id: string) => `${base}:wf:${assertId(id, 'workflow id')}:history`,
    indexAll: () => `${base}:idx:wf`,
    indexAllByState: () => `${base}:idx:wf:state`,
    indexMachine: (machine: string) => `${base}:idx:machine:${assertName(machine, 'machine')}`,
    indexMachineByState: (machine: string) => `${base}:idx:machine:${assertName(machine, 'machine')}:state`,
    events: () => `${base}:events`,
    productStock: (productId: string) => `${base}:stock:${assertId(productId, 'product id')}`,
    accountBalance: (accountId: string) => `${base}:balance:${assertId(accountId, 'account id')}`,
    accountOrders: (accountId: string) => `${base}:account:${assertId(accountId, 'account id')}:orders`,
    saga: (sagaId: string) => `${base}:saga:${assertId(sagaId, 'saga id')}`,
    sagaData: (dataKey: string) => `${base}:data:${assertId(dataKey, 'data key')}`,
    scheduleEntry: (entryId: string) => `${base}:sched:${assertId(entryId, 'schedule entry id')}`,
    scheduleDue: () => `${base}:sched:due`,
    /** Channels are not keys (pub/sub is cluster-wide), but their names are made here too. */
    workflowChannel: () => `${base}:events:workflows`,
    ordersChannel: () => `${base}:events:orders`,

    /**
     * KEYS for a function that writes a workflow: the block documented in the prelude. Orders add
     * the product stock and account balance that a refund touches.
     */
    workflowBlock(id: string, machine: string, order?: { userId: string; productId: string }): string[] {
      const block = [
        keys.workflow(id),
        keys.workflowHistory(id),
        keys.machine(machine),
        keys.indexAll(),
        keys.indexAllByState(),
        keys.indexMachine(machine),
        keys.indexMachineByState(machine),
        keys.events(),
      ];
      if (order) block.push(keys.productStock(order.productId), keys.accountBalance(order.userId));
      return block;
    },
  };
  return keys;
}

export type TenantKeys = ReturnType<typeof tenantKeys>;

/** Every key of a tenant matches this pattern (for tests and maintenance scans). */
export function tenantKeyPattern(tenant: string): string {
  return `${KEY_PREFIX}:{${assertId(tenant, 'tenant')}}:*`;
}

/**
 * A principal's rate-limit bucket (lua/limits.lua rate_take). Bookkeeping, not tenant data: it sits
 * outside tenantKeyPattern, so tenant snapshots do not see it. The principal is hashed (a `sub` may
 * be any text).
 */
export function rateLimitKey(tenant: string, principal: string): string {
  const digest = createHash('sha256').update(principal).digest('hex').slice(0, 32);
  return `${KEY_PREFIX}:ratelimit:{${assertId(tenant, 'tenant')}}:${digest}`;
}

/**
 * One kind of tenant key across every tenant: a SCAN pattern and the tenant of a matching key. Built
 * from tenantKeys itself (with a placeholder tenant), so it follows any change of the key layout.
 */
export function acrossTenants(pick: (keys: TenantKeys) => string): { pattern: string; tenantOf(key: string): string | null } {
  const placeholder = 'tenant0placeholder';
  const sample = pick(tenantKeys(placeholder));
  const marker = `{${placeholder}}`;
  const at = sample.indexOf(marker);
  if (at === -1) throw new Error(`key ${sample} does not carry the tenant hash tag`);
  const head = sample.slice(0, at);
  const tail = sample.slice(at + marker.length);
  const escape = (s: string) => s.replace(/[*?[\]\\]/g, '\\$&');
  return {
    pattern: `${escape(head)}{*}${escape(tail)}`,
    tenantOf(key) {
      if (!key.startsWith(`${head}{`) || !key.endsWith(`}${tail}`)) return null;
      const tenant = key.slice(head.length + 1, key.length - tail.length - 1);
      return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(tenant) ? tenant : null;
    },
  };
}
