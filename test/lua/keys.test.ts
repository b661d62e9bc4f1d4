/**
 * Key spaces are disjoint: no id or name can make one kind of key equal to another kind's
 * (src/redis/keys.ts). Once, an entry with id `due` built the tenant's due set and killed its scheduler.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/engine/engine.js';
import { KEY_KINDS, tenantKeys, type KeyKind } from '../../src/redis/keys.js';
import { createTestEngine, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

const SEGMENTS = Object.values(KEY_KINDS).map((k) => k.segment);
/** Ids and names an attacker would pick: every segment, and the words other kinds end with. */
const ADVERSARIAL = [
  ...SEGMENTS,
  'due', 'history', 'state', 'orders', 'idx', 'wf', 'all', 'status', 'machine', 'machines', 'events',
  'workflows', 'account', 'stock', 'balance', 'data', 'saga', 'sched', 'request', 'x', 'a-b', 'A1',
  'wf-history', 'sched-due', 'idx-wf', 'idx-wf-state', 'idx-machine-state', 'account-orders',
];

function buildAll(tenant: string): Map<string, string> {
  const k = tenantKeys(tenant) as unknown as Record<KeyKind, (param?: string) => string>;
  const built = new Map<string, string>();
  const clash: string[] = [];
  for (const [kind, spec] of Object.entries(KEY_KINDS) as [KeyKind, (typeof KEY_KINDS)[KeyKind]][]) {
    const params: (string | undefined)[] = spec.param === null ? [undefined] : ADVERSARIAL;
    for (const param of params) {
      const key = k[kind](param);
      const label = `${kind}(${param ?? ''})`;
      const other = built.get(key);
      if (other !== undefined && other !== label) clash.push(`${label} = ${other} = ${key}`);
      built.set(key, label);
    }
  }
  expect(clash).toEqual([]);
  return built;
}

describe('key spaces', () => {
  it('gives every kind a segment of its own, without ":"', () => {
    expect(new Set(SEGMENTS).size).toBe(SEGMENTS.length);
    for (const s of SEGMENTS) expect(s).toMatch(/^[a-z][a-z-]*$/);
  });

  it('never builds the same key for two kinds or two params, whatever the ids', () => {
    for (const tenant of ['default', 'due', 'wf']) {
      const built = buildAll(tenant);
      expect(built.size).toBeGreaterThan(Object.keys(KEY_KINDS).length * 10);
      // and each key reads back as exactly the kind and param it was built from
      const base = tenantKeys(tenant).base;
      for (const [key, label] of built) {
        const rest = key.slice(base.length + 1).split(':');
        const kind = (Object.keys(KEY_KINDS) as KeyKind[]).filter((name) => KEY_KINDS[name].segment === rest[0]);
        expect(kind).toHaveLength(1);
        expect(`${kind[0]}(${rest[1] ?? ''})`).toBe(label);
        expect(rest.length).toBe(KEY_KINDS[kind[0]!].param === null ? 1 : 2);
      }
    }
  });

  it('keeps the key builders of two tenants apart', () => {
    const a = buildAll('t1');
    const b = buildAll('t1x');
    for (const key of a.keys()) expect(b.has(key)).toBe(false);
  });
});

describe('adversarial ids against a real Redis', () => {
  let redis: Redis;
  let engine: Engine;
  beforeAll(async () => {
    ({ redis, engine } = await createTestEngine());
  });
  afterAll(() => redis.disconnect());

  it('an entry with id "due" and a workflow with id "history" leave the scheduler working', async () => {
    const tenant = uniqueTenant('keys');
    await engine.workflows.defineMachine(tenant, documentMachine());
    for (const id of ['history', 'state', 'due']) await engine.workflows.start(tenant, { id, machine: 'doc' });
    const past = new Date(Date.now() - 1000);
    for (const id of ['due', 'history', 'state', 'orders', 'sched-due']) {
      await engine.scheduler.schedule(tenant, { id, workflowId: id === 'orders' || id === 'sched-due' ? 'due' : id, to: 'review', runAt: past });
    }
    const k = engine.context.keys(tenant);
    expect(await redis.type(k.scheduleDue())).toBe('zset');
    const claimed = await engine.scheduler.claimDue(tenant, { limit: 10, leaseMs: 1000 });
    expect(claimed.sort()).toEqual(['due', 'history', 'orders', 'sched-due', 'state']);
    for (const id of claimed) await engine.scheduler.apply(tenant, id);
    expect((await engine.scheduler.get(tenant, 'due'))?.status).toBe('DONE');
    expect((await engine.workflows.get(tenant, 'history'))?.state).toBe('review');
    expect((await engine.workflows.history(tenant, 'history', {})).items.map((e) => e.to)).toEqual(['draft', 'review']);
  });
});
