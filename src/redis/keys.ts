/**
 * Every Redis key and pub/sub channel name atomflow uses, built in this one module.
 *
 * Each key of a tenant carries the tenant as its hash tag (`atomflow:{acme}:wf:o-1`), so every key a
 * function touches lives in one hash slot and the libraries work unchanged on Redis Cluster. The Lua
 * functions never build key names: they receive them in KEYS from the engines, which get them here.
 *
 * Key spaces are disjoint by construction: every key is `<base>:<segment>` or `<base>:<segment>:<param>`,
 * where each kind of key has a segment of its own (KEY_KINDS), segments contain no ':', and params are
 * ids or names, which contain no ':' either. So the text after the base names exactly one kind and one
 * param: an entry id `due` or a workflow id `history` cannot produce another kind's key.
 */
import { createHash } from 'node:crypto';
import { assertId, assertName } from '../core/validation.js';

export const KEY_PREFIX = 'atomflow';

/** Every kind of key: its own segment, and what its param is (none: one key per tenant). */
export const KEY_KINDS = {
  machine: { segment: 'machine', param: 'name' },
  machineNames: { segment: 'machines', param: null },
  workflow: { segment: 'wf', param: 'id' },
  workflowHistory: { segment: 'wf-history', param: 'id' },
  indexAll: { segment: 'idx-wf', param: null },
  indexAllByState: { segment: 'idx-wf-state', param: null },
  indexMachine: { segment: 'idx-machine', param: 'name' },
  indexMachineByState: { segment: 'idx-machine-state', param: 'name' },
  events: { segment: 'events', param: null },
  productStock: { segment: 'stock', param: 'id' },
  accountBalance: { segment: 'balance', param: 'id' },
  accountOrders: { segment: 'account-orders', param: 'id' },
  saga: { segment: 'saga', param: 'id' },
  sagaData: { segment: 'data', param: 'id' },
  scheduleEntry: { segment: 'sched', param: 'id' },
  scheduleDue: { segment: 'sched-due', param: null },
  scheduleIndex: { segment: 'sched-idx', param: null },
  scheduleIndexByStatus: { segment: 'sched-idx-status', param: null },
  request: { segment: 'request', param: 'id' },
} as const satisfies Record<string, { segment: string; param: 'id' | 'name' | null }>;

export type KeyKind = keyof typeof KEY_KINDS;

export function tenantKeys(tenant: string) {
  assertId(tenant, 'tenant');
  const base = `${KEY_PREFIX}:{${tenant}}`;
  const seg = (kind: KeyKind) => `${base}:${KEY_KINDS[kind].segment}`;
  const withId = (kind: KeyKind, id: string, what: string) => `${seg(kind)}:${assertId(id, what)}`;
  const withName = (kind: KeyKind, name: string, what: string) => `${seg(kind)}:${assertName(name, what)}`;
  const keys = {
    tenant,
    base,
    machine: (name: string) => withName('machine', name, 'machine'),
    machineNames: () => seg('machineNames'),
    workflow: (id: string) => withId('workflow', id, 'workflow id'),
    workflowHistory: (id: string) => withId('workflowHistory', id, 'workflow id'),
    indexAll: () => seg('indexAll'),
    indexAllByState: () => seg('indexAllByState'),
    indexMachine: (machine: string) => withName('indexMachine', machine, 'machine'),
    indexMachineByState: (machine: string) => withName('indexMachineByState', machine, 'machine'),
    events: () => seg('events'),
    productStock: (productId: string) => withId('productStock', productId, 'product id'),
    accountBalance: (accountId: string) => withId('accountBalance', accountId, 'account id'),
    accountOrders: (accountId: string) => withId('accountOrders', accountId, 'account id'),
    saga: (sagaId: string) => withId('saga', sagaId, 'saga id'),
    sagaData: (dataKey: string) => withId('sagaData', dataKey, 'data key'),
    scheduleEntry: (entryId: string) => withId('scheduleEntry', entryId, 'schedule entry id'),
    scheduleDue: () => seg('scheduleDue'),
    scheduleIndex: () => seg('scheduleIndex'),
    scheduleIndexByStatus: () => seg('scheduleIndexByStatus'),
    /** KEYS[1..4] of every scheduler function that writes an entry (lua/scheduler.lua). */
    scheduleKeys: (entryId: string) => [keys.scheduleEntry(entryId), keys.scheduleDue(), keys.scheduleIndex(), keys.scheduleIndexByStatus()],
    /** The stored outcome of an idempotent request (depositFunds, restockProduct) by its requestId. */
    request: (requestId: string) => withId('request', requestId, 'requestId'),
    /**
     * Channels are not keys, but their names are made here too. They carry the tenant's hash tag:
     * on a cluster they are sharded channels (SPUBLISH) in the tenant's slot, on the shard that runs
     * the tenant's functions.
     */
    workflowChannel: () => `${base}:events:workflows`,
    ordersChannel: () => `${base}:events:orders`,

    /**
     * KEYS for a function that writes a workflow: the block documented in lua/include/workflow.lua. Orders add
     * the product stock and account balance that a refund touches, and the account's order index.
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
      if (order) block.push(keys.productStock(order.productId), keys.accountBalance(order.userId), keys.accountOrders(order.userId));
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
