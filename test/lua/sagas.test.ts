import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Engine } from '../../src/engine/engine.js';
import type { SagaStep } from '../../src/sagas/sagas.engine.js';
import { fcall, fcallReadOnly } from '../../src/redis/replies.js';
import { createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';

let redis: Redis;
let engine: Engine;

beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

/** The tenant's keys without its saga records: what a rolled-back saga must leave as it found. */
async function dataSnapshot(tenant: string): Promise<Record<string, unknown>> {
  const snapshot = await snapshotTenant(redis, tenant);
  return Object.fromEntries(Object.entries(snapshot).filter(([key]) => !key.includes(':saga:')));
}

/** A step that always fails: the guard counter stays within [0, 10]. */
const breakMax: SagaStep = { op: 'HINCRBY', key: 'guard', field: 'n', amount: 11, max: 10 };
const breakMin: SagaStep = { op: 'HINCRBY', key: 'guard', field: 'n', amount: -1, min: 0 };

describe('saga execution', () => {
  it('completes a saga across a hash and a set', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await redis.hset(k.sagaData('inventory'), 'widget', '5', 'old', 'x');
    await redis.sadd(k.sagaData('tags'), 'stale');

    const outcome = await engine.sagas.execute(tenant, {
      id: 's-1',
      steps: [
        { op: 'HINCRBY', key: 'inventory', field: 'widget', amount: -5, min: 0 },
        { op: 'HSET', key: 'inventory', field: 'note', value: 'reserved' },
        { op: 'HDEL', key: 'inventory', field: 'old' },
        { op: 'SADD', key: 'tags', member: 'reserved' },
        { op: 'SREM', key: 'tags', member: 'stale' },
      ],
    });
    expect(outcome).toMatchObject({ id: 's-1', status: 'COMPLETED', stepsCompleted: 5, failedStep: null, error: null });
    expect(outcome.createdAt).toBeInstanceOf(Date);
    expect((await engine.sagas.dataHash(tenant, 'inventory')).fields).toEqual({ widget: '0', note: 'reserved' });
    expect((await engine.sagas.dataSet(tenant, 'tags')).members).toEqual(['reserved']);
    expect(await engine.sagas.get(tenant, 's-1')).toEqual(outcome);
  });

  it('accepts a HINCRBY that lands exactly on its bounds, creating absent fields from 0', async () => {
    const tenant = uniqueTenant();
    const outcome = await engine.sagas.execute(tenant, {
      id: 'edges',
      steps: [
        { op: 'HINCRBY', key: 'c', field: 'up', amount: 10, min: 0, max: 10 },
        { op: 'HINCRBY', key: 'c', field: 'down', amount: -3, min: -3 },
        { op: 'HINCRBY', key: 'c', field: 'free', amount: -2147483647 },
      ],
    });
    expect(outcome.status).toBe('COMPLETED');
    expect((await engine.sagas.dataHash(tenant, 'c')).fields).toEqual({ up: '10', down: '-3', free: '-2147483647' });
  });

  // Each case: data set up before the saga, the steps under test, and a failing last step.
  // The data keys must then be exactly as before (absent fields and keys included).
  const rollbackCases: [string, (tenant: string) => Promise<void>, SagaStep[], SagaStep][] = [
    [
      'HSET of an existing field and of a field that did not exist',
      async (t) => void (await redis.hset(key(t, 'h'), 'a', 'before')),
      [
        { op: 'HSET', key: 'h', field: 'a', value: 'after' },
        { op: 'HSET', key: 'h', field: 'b', value: 'new' },
      ],
      breakMax,
    ],
    [
      'HSET on a key that did not exist (the key is removed again)',
      async () => {},
      [
        { op: 'HSET', key: 'fresh', field: 'a', value: '1' },
        { op: 'HSET', key: 'fresh', field: 'a', value: '2' },
      ],
      breakMin,
    ],
    [
      'HDEL of an existing field, of an absent field, and of the last field of a key',
      async (t) => {
        await redis.hset(key(t, 'h'), 'a', '1', 'b', '2');
        await redis.hset(key(t, 'last'), 'only', 'v');
      },
      [
        { op: 'HDEL', key: 'h', field: 'a' },
        { op: 'HDEL', key: 'h', field: 'absent' },
        { op: 'HDEL', key: 'last', field: 'only' },
        { op: 'HDEL', key: 'nokey', field: 'x' },
      ],
      breakMax,
    ],
    [
      'HINCRBY of an existing field and of an absent field on an absent key',
      async (t) => void (await redis.hset(key(t, 'h'), 'n', '41')),
      [
        { op: 'HINCRBY', key: 'h', field: 'n', amount: 1 },
        { op: 'HINCRBY', key: 'h', field: 'm', amount: -7 },
        { op: 'HINCRBY', key: 'fresh', field: 'n', amount: 3, min: 0, max: 5 },
      ],
      breakMin,
    ],
    [
      'SADD of a member already present (it stays), of a new member, and on an absent key',
      async (t) => void (await redis.sadd(key(t, 's'), 'present')),
      [
        { op: 'SADD', key: 's', member: 'present' },
        { op: 'SADD', key: 's', member: 'new' },
        { op: 'SADD', key: 'fresh', member: 'm' },
      ],
      breakMax,
    ],
    [
      'SREM of a present member (it comes back), of an absent member, and of the last member',
      async (t) => {
        await redis.sadd(key(t, 's'), 'a', 'b');
        await redis.sadd(key(t, 'single'), 'only');
      },
      [
        { op: 'SREM', key: 's', member: 'a' },
        { op: 'SREM', key: 's', member: 'never' },
        { op: 'SREM', key: 'single', member: 'only' },
      ],
      breakMin,
    ],
    [
      'the same key used as a set, emptied, then as a hash',
      async (t) => void (await redis.sadd(key(t, 'x'), 'm')),
      [
        { op: 'SREM', key: 'x', member: 'm' },
        { op: 'HSET', key: 'x', field: 'f', value: 'v' },
        { op: 'HDEL', key: 'x', field: 'f' },
        { op: 'SADD', key: 'x', member: 'm' },
        { op: 'SADD', key: 'x', member: 'other' },
      ],
      breakMax,
    ],
  ];

  function key(tenant: string, dataKey: string): string {
    return engine.context.keys(tenant).sagaData(dataKey);
  }

  it.each(rollbackCases)('rolls back %s to the exact prior state', async (_label, setup, steps, failing) => {
    const tenant = uniqueTenant();
    await setup(tenant);
    await redis.hset(key(tenant, 'guard'), 'n', '0');
    const before = await dataSnapshot(tenant);

    const all = [...steps, failing];
    const outcome = await engine.sagas.execute(tenant, { id: 'rb', steps: all });
    expect(outcome).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: steps.length, failedStep: all.length });
    const bound = failing.max !== undefined ? `above max ${failing.max}` : `below min ${failing.min}`;
    expect(outcome.error).toBe(
      `step ${all.length} (HINCRBY field n by ${failing.amount}) failed: the field holds 0 and adding ${failing.amount} would go ${bound}`,
    );
    expect(await dataSnapshot(tenant)).toEqual(before);
    expect(await engine.sagas.get(tenant, 'rb')).toEqual(outcome);
  });

  it('rolls back when a step hits a key of another type', async () => {
    const tenant = uniqueTenant();
    await redis.sadd(key(tenant, 'aset'), 'm');
    await redis.hset(key(tenant, 'h'), 'a', '1');
    const before = await dataSnapshot(tenant);

    const outcome = await engine.sagas.execute(tenant, {
      id: 'wrongtype',
      steps: [
        { op: 'HSET', key: 'h', field: 'a', value: '2' },
        { op: 'SADD', key: 'aset', member: 'n' },
        { op: 'HSET', key: 'aset', field: 'f', value: 'v' },
        { op: 'HSET', key: 'h', field: 'b', value: 'never runs' },
      ],
    });
    expect(outcome).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 2, failedStep: 3 });
    expect(outcome.error).toMatch(/^step 3 \(HSET field f\) failed: WRONGTYPE /);
    expect(await dataSnapshot(tenant)).toEqual(before);

    const setOnHash = await engine.sagas.execute(tenant, {
      id: 'wrongtype-2',
      steps: [{ op: 'SREM', key: 'h', member: 'a' }],
    });
    expect(setOnHash).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 0, failedStep: 1 });
    expect(setOnHash.error).toMatch(/^step 1 \(SREM member a\) failed: WRONGTYPE /);
    expect(await dataSnapshot(tenant)).toEqual(before);
  });

  it('rolls back a HINCRBY on a value that is not an integer, or that would overflow', async () => {
    const tenant = uniqueTenant();
    await redis.hset(key(tenant, 'h'), 'text', 'abc', 'big', '9223372036854775800');
    const before = await dataSnapshot(tenant);

    const notInt = await engine.sagas.execute(tenant, {
      id: 'not-int',
      steps: [
        { op: 'HSET', key: 'h', field: 'text', value: 'changed' },
        { op: 'HINCRBY', key: 'h', field: 'text', amount: 1 },
      ],
    });
    // step 1 replaced the text, so step 2 still sees a non-integer: 'changed'
    expect(notInt).toMatchObject({
      status: 'ROLLED_BACK',
      stepsCompleted: 1,
      failedStep: 2,
      error: 'step 2 (HINCRBY field text by 1) failed: the field does not hold an integer',
    });
    expect(await dataSnapshot(tenant)).toEqual(before);

    const overflow = await engine.sagas.execute(tenant, {
      id: 'overflow',
      steps: [
        { op: 'SADD', key: 's', member: 'm' },
        { op: 'HINCRBY', key: 'h', field: 'big', amount: 100 },
      ],
    });
    expect(overflow).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 1, failedStep: 2 });
    expect(overflow.error).toMatch(/^step 2 \(HINCRBY field big by 100\) failed: .*overflow/);
    expect(await dataSnapshot(tenant)).toEqual(before);
  });

  it('rolls back on the first step with nothing completed', async () => {
    const tenant = uniqueTenant();
    await redis.hset(key(tenant, 'guard'), 'n', '0');
    const before = await dataSnapshot(tenant);
    const outcome = await engine.sagas.execute(tenant, { id: 'first', steps: [breakMin, { op: 'SADD', key: 's', member: 'm' }] });
    expect(outcome).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 0, failedStep: 1 });
    expect(await dataSnapshot(tenant)).toEqual(before);
  });
});

describe('saga idempotency', () => {
  it('returns the stored outcome for the same id and steps and runs nothing', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    const steps: SagaStep[] = [
      { op: 'HINCRBY', key: 'acct', field: 'balance', amount: 100, max: 1000 },
      { op: 'SADD', key: 'paid', member: 'inv-1' },
    ];
    const first = await engine.sagas.execute(tenant, { id: 'pay-1', steps });
    expect(first.status).toBe('COMPLETED');

    // Change the data behind the saga's back: a second run would change it again.
    await redis.hset(k.sagaData('acct'), 'balance', '7');
    await redis.srem(k.sagaData('paid'), 'inv-1');
    const before = await snapshotTenant(redis, tenant);

    // Same logical steps, properties in another order and explicit nulls: the same canonical text.
    const again = await engine.sagas.execute(tenant, {
      id: 'pay-1',
      steps: [
        { max: 1000, amount: 100, field: 'balance', key: 'acct', op: 'HINCRBY', min: null },
        { member: 'inv-1', key: 'paid', op: 'SADD', field: undefined },
      ],
    });
    expect(again).toEqual(first);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    expect((await engine.sagas.dataHash(tenant, 'acct')).fields).toEqual({ balance: '7' });
    expect((await engine.sagas.dataSet(tenant, 'paid')).members).toEqual([]);
  });

  it('returns the stored outcome of a rolled-back saga without running it again', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await redis.hset(k.sagaData('guard'), 'n', '0');
    const steps: SagaStep[] = [{ op: 'HSET', key: 'h', field: 'f', value: 'v' }, breakMin];
    const first = await engine.sagas.execute(tenant, { id: 'rb-1', steps });
    expect(first).toMatchObject({ status: 'ROLLED_BACK', failedStep: 2, stepsCompleted: 1 });

    // Now the guard would let step 2 pass; the stored outcome still answers and nothing runs.
    await redis.hset(k.sagaData('guard'), 'n', '5');
    const before = await snapshotTenant(redis, tenant);
    expect(await engine.sagas.execute(tenant, { id: 'rb-1', steps })).toEqual(first);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
    expect((await engine.sagas.dataHash(tenant, 'h')).fields).toEqual({});
  });

  it('rejects the same id with other steps as IDEMPOTENCY_CONFLICT', async () => {
    const tenant = uniqueTenant();
    await engine.sagas.execute(tenant, { id: 'once', steps: [{ op: 'SADD', key: 's', member: 'a' }] });
    for (const steps of [
      [{ op: 'SADD', key: 's', member: 'b' }],
      [{ op: 'SADD', key: 'other', member: 'a' }],
      [{ op: 'SADD', key: 's', member: 'a' }, { op: 'SADD', key: 's', member: 'a' }],
    ] as SagaStep[][]) {
      await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.execute(tenant, { id: 'once', steps }), 'IDEMPOTENCY_CONFLICT');
    }
    expect((await engine.sagas.dataSet(tenant, 's')).members).toEqual(['a']);
  });

  it('answers null for a saga that never ran', async () => {
    expect(await engine.sagas.get(uniqueTenant(), 'nope')).toBeNull();
  });
});

describe('saga input validation', () => {
  const ok: SagaStep = { op: 'HSET', key: 'h', field: 'f', value: 'v' };
  const cases: [string, unknown][] = [
    ['an empty list', []],
    ['65 steps', Array.from({ length: 65 }, () => ok)],
    ['an unknown op', [{ op: 'INCR', key: 'h', field: 'f' }]],
    ['HSET without field', [{ op: 'HSET', key: 'h', value: 'v' }]],
    ['HSET without value', [{ op: 'HSET', key: 'h', field: 'f' }]],
    ['HDEL without field', [{ op: 'HDEL', key: 'h' }]],
    ['HINCRBY without amount', [{ op: 'HINCRBY', key: 'h', field: 'f' }]],
    ['SADD without member', [{ op: 'SADD', key: 's' }]],
    ['SREM without member', [{ op: 'SREM', key: 's' }]],
    ['a step without key', [{ op: 'SADD', member: 'm' }]],
    ['an operand the op does not take', [{ op: 'SADD', key: 's', member: 'm', field: 'f' }]],
    ['min greater than max', [{ op: 'HINCRBY', key: 'h', field: 'f', amount: 1, min: 5, max: 4 }]],
    ['a non-integer amount', [{ op: 'HINCRBY', key: 'h', field: 'f', amount: 1.5 }]],
    ['an amount given as a string', [{ op: 'HINCRBY', key: 'h', field: 'f', amount: '1' }]],
    ['an amount beyond 2^31', [{ op: 'HINCRBY', key: 'h', field: 'f', amount: 2 ** 31 }]],
    ['a min below -2^31', [{ op: 'HINCRBY', key: 'h', field: 'f', amount: 1, min: -(2 ** 31) - 1 }]],
    ['a value that is not a string', [{ op: 'HSET', key: 'h', field: 'f', value: 5 }]],
    ['an empty field', [{ op: 'HDEL', key: 'h', field: '' }]],
    ['a field over 1024 bytes', [{ op: 'HDEL', key: 'h', field: 'é'.repeat(513) }]],
    ['a member over 1024 bytes', [{ op: 'SADD', key: 's', member: 'm'.repeat(1025) }]],
    ['a value over 16 KiB', [{ op: 'HSET', key: 'h', field: 'f', value: 'v'.repeat(16385) }]],
    ['a data key with {', [{ ...ok, key: 'a{b' }]],
    ['a data key with }', [{ ...ok, key: 'a}b' }]],
    ['a data key with :', [{ ...ok, key: 'a:b' }]],
    ['a valid step followed by an invalid one', [ok, { op: 'HINCRBY', key: 'h', field: 'f', amount: 1, max: 0.5 }]],
  ];

  it.each(cases)('rejects %s without writing', async (_label, steps) => {
    const tenant = uniqueTenant();
    await redis.hset(engine.context.keys(tenant).sagaData('h'), 'f', 'kept');
    const err = await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.sagas.execute(tenant, { id: 'bad', steps: steps as SagaStep[] }),
      'BAD_USER_INPUT',
    );
    expect(err.message).not.toBe('');
    expect(await engine.sagas.get(tenant, 'bad')).toBeNull();
  });

  it('accepts the largest values: 64 steps, 1024-byte fields and members, a 16 KiB value', async () => {
    const tenant = uniqueTenant();
    const steps: SagaStep[] = [
      { op: 'HSET', key: 'h', field: 'é'.repeat(512), value: 'v'.repeat(16384) },
      { op: 'SADD', key: 's', member: 'm'.repeat(1024) },
      ...Array.from({ length: 62 }, (_, i): SagaStep => ({ op: 'HINCRBY', key: 'c', field: `f${i}`, amount: 2 ** 31 - 1 })),
    ];
    const outcome = await engine.sagas.execute(tenant, { id: 'big', steps });
    expect(outcome).toMatchObject({ status: 'COMPLETED', stepsCompleted: 64 });
    expect((await engine.sagas.dataSet(tenant, 's')).members).toEqual(['m'.repeat(1024)]);
  });

  it('rejects an invalid saga id', async () => {
    const tenant = uniqueTenant();
    for (const id of ['', 'a:b', '{x}', '-lead']) {
      await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.execute(tenant, { id, steps: [ok] }), 'BAD_USER_INPUT');
    }
  });
});

describe('saga_execute in Lua (raw FCALL, bypassing the typed layer)', () => {
  /** Runs saga_execute with hand-made KEYS and steps; the record is the tenant's saga 'raw'. */
  async function raw(tenant: string, dataKeys: string[], steps: unknown, text?: string): Promise<unknown> {
    const k = engine.context.keys(tenant);
    return fcall(redis, 'saga_execute', [k.saga('raw'), ...dataKeys.map((d) => k.sagaData(d))], ['raw', text ?? JSON.stringify(steps), 604_800_000]);
  }
  const full = (tenant: string, d: string) => engine.context.keys(tenant).sagaData(d);

  it('rejects a step naming a key not passed in KEYS, with nothing written', async () => {
    const tenant = uniqueTenant();
    await redis.hset(full(tenant, 'passed'), 'f', '1');
    const err = await expectRejectedWithoutWrites(
      redis,
      tenant,
      () =>
        raw(tenant, ['passed'], [
          { op: 'HSET', key: full(tenant, 'passed'), field: 'f', value: '2' },
          { op: 'HSET', key: full(tenant, 'hidden'), field: 'f', value: 'x' },
        ]),
      'BAD_USER_INPUT',
    );
    expect(err.message).toMatch(/step 2: key must be one of the data keys/);
  });

  it('rejects a step that targets the saga record itself', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () =>
        fcall(redis, 'saga_execute', [k.saga('raw'), k.saga('raw')], ['raw', JSON.stringify([{ op: 'HSET', key: k.saga('raw'), field: 'status', value: 'x' }]), 604_800_000]),
      'BAD_USER_INPUT',
    );
  });

  const luaCases: [string, (tenant: string) => unknown, string?][] = [
    ['invalid JSON', () => null, '[{'],
    ['an empty list', () => []],
    ['an object instead of a list', (t) => ({ op: 'SADD', key: full(t, 's'), member: 'm' })],
    ['65 steps', (t) => Array.from({ length: 65 }, () => ({ op: 'SADD', key: full(t, 's'), member: 'm' }))],
    ['an unknown op', (t) => [{ op: 'DEL', key: full(t, 's') }]],
    ['a missing operand', (t) => [{ op: 'HSET', key: full(t, 'h'), field: 'f' }]],
    ['an unknown property', (t) => [{ op: 'SADD', key: full(t, 's'), member: 'm', ttl: 5 }]],
    ['min greater than max', (t) => [{ op: 'HINCRBY', key: full(t, 'h'), field: 'f', amount: 1, min: 2, max: 1 }]],
    ['a non-integer amount', (t) => [{ op: 'HINCRBY', key: full(t, 'h'), field: 'f', amount: 0.5 }]],
    ['an amount as a string', (t) => [{ op: 'HINCRBY', key: full(t, 'h'), field: 'f', amount: '1' }]],
    ['an amount beyond 2^31', (t) => [{ op: 'HINCRBY', key: full(t, 'h'), field: 'f', amount: 2 ** 31 }]],
    ['a field over 1024 bytes', (t) => [{ op: 'HDEL', key: full(t, 'h'), field: 'f'.repeat(1025) }]],
    ['a value over 16 KiB', (t) => [{ op: 'HSET', key: full(t, 'h'), field: 'f', value: 'v'.repeat(16385) }]],
    ['a member that is not a string', (t) => [{ op: 'SADD', key: full(t, 's'), member: 7 }]],
    [
      'a bad step after steps that would run',
      (t) => [
        { op: 'SADD', key: full(t, 's'), member: 'm' },
        { op: 'HSET', key: full(t, 'h'), field: 'f', value: 'v' },
        { op: 'SADD', key: full(t, 's') },
      ],
    ],
  ];

  it.each(luaCases)('rejects %s without writing', async (_label, steps, text) => {
    const tenant = uniqueTenant();
    await redis.sadd(full(tenant, 's'), 'kept');
    await expectRejectedWithoutWrites(redis, tenant, () => raw(tenant, ['s', 'h'], steps(tenant), text), 'BAD_USER_INPUT');
  });

  it('rejects an invalid saga id in Lua', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => fcall(redis, 'saga_execute', [k.saga('raw'), k.sagaData('s')], ['bad id', JSON.stringify([{ op: 'SADD', key: k.sagaData('s'), member: 'm' }]), 604_800_000]),
      'BAD_USER_INPUT',
    );
  });

  it('compares the steps text exactly: other text for the same steps is a conflict', async () => {
    const tenant = uniqueTenant();
    const steps = [{ op: 'SADD', key: full(tenant, 's'), member: 'm' }];
    const first = await raw(tenant, ['s'], steps);
    expect(await raw(tenant, ['s'], steps)).toEqual(first);
    await expectRejectedWithoutWrites(redis, tenant, () => raw(tenant, ['s'], null, ` ${JSON.stringify(steps)}`), 'IDEMPOTENCY_CONFLICT');
  });

  it('reports its library version', async () => {
    expect(await fcallReadOnly(redis, 'sagas_version', [], [])).toEqual({ library: 'atomflow_sagas', version: '2' });
  });
});

describe('saga data reads', () => {
  it('reads hashes and sets, and answers {} and [] for absent keys', async () => {
    const tenant = uniqueTenant();
    await engine.sagas.execute(tenant, {
      id: 'fill',
      steps: [
        { op: 'HSET', key: 'h', field: 'a', value: '1' },
        { op: 'HSET', key: 'h', field: '2', value: '' },
        { op: 'SADD', key: 's', member: 'zeta' },
        { op: 'SADD', key: 's', member: 'Alpha' },
        { op: 'SADD', key: 's', member: 'beta' },
      ],
    });
    expect((await engine.sagas.dataHash(tenant, 'h')).fields).toEqual({ a: '1', '2': '' });
    expect((await engine.sagas.dataSet(tenant, 's')).members).toEqual(['Alpha', 'beta', 'zeta']);
    expect((await engine.sagas.dataHash(tenant, 'absent')).fields).toEqual({});
    expect((await engine.sagas.dataSet(tenant, 'absent')).members).toEqual([]);
  });

  it('rejects reading a key of another type, and invalid data key ids', async () => {
    const tenant = uniqueTenant();
    await redis.sadd(engine.context.keys(tenant).sagaData('s'), 'm');
    await redis.hset(engine.context.keys(tenant).sagaData('h'), 'f', 'v');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataHash(tenant, 's'), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataSet(tenant, 'h'), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataHash(tenant, 'a:b'), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataSet(tenant, '{x}'), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataSet(tenant, 's', { first: 101 }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataSet(tenant, 's', { after: 'bm90IGEgbnVtYmVy' }), 'BAD_USER_INPUT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.sagas.dataHash(tenant, 'h', { after: '!' }), 'BAD_USER_INPUT');
    // the functions check their arguments too
    await expect(redis.call('FCALL_RO', 'atomflow_'+'data_set', 1, engine.context.keys(tenant).sagaData('s'), '0', '1001')).rejects.toThrow(/BAD_USER_INPUT first/);
    await expect(redis.call('FCALL_RO', 'atomflow_'+'data_hash', 1, engine.context.keys(tenant).sagaData('h'), '-1', '10')).rejects.toThrow(/BAD_USER_INPUT after/);
  });

  it('pages a large set and hash with a cursor: no call reads more than a page, every element comes back', async () => {
    const tenant = uniqueTenant();
    const k = engine.context.keys(tenant);
    const members = Array.from({ length: 20_000 }, (_, i) => `m${i}`);
    for (let i = 0; i < members.length; i += 5000) {
      await redis.sadd(k.sagaData('big-set'), ...members.slice(i, i + 5000));
      await redis.hset(k.sagaData('big-hash'), Object.fromEntries(members.slice(i, i + 5000).map((m) => [m, 'v'])));
    }
    const seenMembers = new Set<string>();
    const seenFields = new Set<string>();
    let largestPage = 0;
    let calls = 0;
    for (const read of ['set', 'hash'] as const) {
      let after: string | null = null;
      do {
        const page: { items: string[]; nextCursor: string | null } =
          read === 'set'
            ? await engine.sagas.dataSet(tenant, 'big-set', { first: 100, after }).then((p) => ({ items: p.members, nextCursor: p.nextCursor }))
            : await engine.sagas.dataHash(tenant, 'big-hash', { first: 100, after }).then((p) => ({ items: Object.keys(p.fields), nextCursor: p.nextCursor }));
        page.items.forEach((m) => (read === 'set' ? seenMembers : seenFields).add(m));
        largestPage = Math.max(largestPage, page.items.length);
        after = page.nextCursor;
        calls++;
      } while (after !== null);
    }
    expect(seenMembers.size).toBe(members.length);
    expect(seenFields.size).toBe(members.length);
    expect(largestPage).toBeLessThanOrEqual(1000);
    expect(calls).toBeGreaterThan(2 * (members.length / 1000));
    // a member page is sorted
    const first = await engine.sagas.dataSet(tenant, 'big-set', { first: 50 });
    expect(first.members).toEqual([...first.members].sort());
    expect(first.nextCursor).not.toBeNull();
  });
});

describe('retention of saga records', () => {
  it('a saga record expires RETENTION_SETTLED after it ran (7 days by default); its data does not', async () => {
    const tenant = uniqueTenant('saga');
    const k = engine.context.keys(tenant);
    await engine.sagas.execute(tenant, { id: 's-1', steps: [{ op: 'SADD', key: 'set', member: 'm' }] });
    const ttl = await redis.pttl(k.saga('s-1'));
    expect(ttl).toBeGreaterThan(7 * 86_400_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(7 * 86_400_000);
    expect(await redis.pttl(k.sagaData('set'))).toBe(-1);
    const short = new Engine(redis, { retentionSettledMs: 1234 });
    await short.sagas.execute(tenant, { id: 's-2', steps: [{ op: 'HINCRBY', key: 'h', field: 'f', amount: -1, min: 0 }] });
    expect(await redis.pttl(k.saga('s-2'))).toBeLessThanOrEqual(1234);
    expect(await redis.pttl(k.saga('s-2'))).toBeGreaterThan(0);
    await expect(fcall(redis, 'saga_execute', [k.saga('s-3'), k.sagaData('x')], ['s-3', JSON.stringify([{ op: 'SADD', key: k.sagaData('x'), member: 'm' }]), '0'])).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
  });
});
