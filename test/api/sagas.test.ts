/**
 * Sagas over GraphQL: executeSaga completing and rolling back (the data keys exactly as before),
 * the stored outcome (saga(id), idempotent replay, IDEMPOTENCY_CONFLICT), the dataHash/dataSet reads
 * and every BAD_USER_INPUT, checked to write nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGraphQLErrorWithoutWrites, startTestServer, type TestServer, uid } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

const SAGA_FIELDS = `id status stepsCompleted failedStep error`;
const EXECUTE = `mutation($input: ExecuteSagaInput!) { executeSaga(input: $input) { ${SAGA_FIELDS} } }`;
const SAGA = `query($id: ID!) { saga(id: $id) { ${SAGA_FIELDS} } }`;
const DATA = `query($h: String!, $s: String!) { dataHash(key: $h) { fields nextCursor } dataSet(key: $s) { members nextCursor } }`;
const DATA_HASH = `query($key: String!) { dataHash(key: $key) { fields } }`;
const DATA_SET = `query($key: String!) { dataSet(key: $key) { members } }`;

type Step = { op: string; key: string; field?: string; value?: string; amount?: number; member?: string; min?: number; max?: number };

async function execute(id: string, steps: Step[]) {
  return (await t.ok(EXECUTE, { input: { id, steps } })).executeSaga;
}

async function data(hashKey: string, setKey: string): Promise<{ dataHash: Record<string, string>; dataSet: string[] }> {
  const page = await t.ok(DATA, { h: hashKey, s: setKey });
  // small keys come back in one page
  expect([page.dataHash.nextCursor, page.dataSet.nextCursor]).toEqual([null, null]);
  return { dataHash: page.dataHash.fields, dataSet: page.dataSet.members };
}

/** The tenant's saga data keys only (the saga records are left out), with their full content. */
async function dataSnapshot(): Promise<Record<string, unknown>> {
  const all = await t.snapshot();
  return Object.fromEntries(Object.entries(all).filter(([key]) => key.includes(':data:')));
}

describe('executeSaga', () => {
  it('completes over a hash and a set, and dataHash/dataSet show the result', async () => {
    const h = uid('acct');
    const s = uid('tags');
    const id = uid('saga');
    const outcome = await execute(id, [
      { op: 'HSET', key: h, field: 'name', value: 'Ada' },
      { op: 'HINCRBY', key: h, field: 'balance', amount: 150, min: 0, max: 1000 },
      { op: 'HINCRBY', key: h, field: 'balance', amount: -50 },
      { op: 'HSET', key: h, field: 'tmp', value: 'x' },
      { op: 'HDEL', key: h, field: 'tmp' },
      { op: 'SADD', key: s, member: 'vip' },
      { op: 'SADD', key: s, member: 'early' },
      { op: 'SADD', key: s, member: 'gone' },
      { op: 'SREM', key: s, member: 'gone' },
    ]);
    expect(outcome).toEqual({ id, status: 'COMPLETED', stepsCompleted: 9, failedStep: null, error: null });
    expect(await data(h, s)).toEqual({ dataHash: { name: 'Ada', balance: '100' }, dataSet: ['early', 'vip'] });
    expect((await t.ok(SAGA, { id })).saga).toEqual(outcome);
  });

  it('builds on data from earlier sagas', async () => {
    const h = uid('acct');
    await execute(uid('saga'), [{ op: 'HINCRBY', key: h, field: 'n', amount: 5 }]);
    await execute(uid('saga'), [{ op: 'HINCRBY', key: h, field: 'n', amount: 7, max: 12 }]);
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({ n: '12' });
  });

  it('rolls back on a HINCRBY below min, restoring the exact previous data', async () => {
    const h = uid('acct');
    const s = uid('tags');
    const fresh = uid('fresh');
    await execute(uid('saga'), [
      { op: 'HSET', key: h, field: 'name', value: 'Ada' },
      { op: 'HSET', key: h, field: 'old', value: 'keep me' },
      { op: 'HINCRBY', key: h, field: 'balance', amount: 100 },
      { op: 'SADD', key: s, member: 'present' },
      { op: 'SADD', key: s, member: 'other' },
    ]);
    const beforeData = await data(h, s);
    expect(beforeData).toEqual({ dataHash: { name: 'Ada', old: 'keep me', balance: '100' }, dataSet: ['other', 'present'] });
    const beforeKeys = await dataSnapshot();

    const id = uid('saga');
    const outcome = await execute(id, [
      { op: 'HSET', key: h, field: 'name', value: 'Grace' }, // overwrites an existing field
      { op: 'HSET', key: h, field: 'added', value: 'new' }, // a field that did not exist
      { op: 'HDEL', key: h, field: 'old' }, // removes an existing field
      { op: 'HINCRBY', key: h, field: 'balance', amount: -30, min: 0 }, // 100 -> 70
      { op: 'SADD', key: s, member: 'present' }, // already there: must stay
      { op: 'SADD', key: s, member: 'added' }, // new: must go again
      { op: 'SREM', key: s, member: 'other' }, // removed: must come back
      { op: 'SADD', key: fresh, member: 'm' }, // a key that did not exist: must not exist after
      { op: 'HINCRBY', key: h, field: 'balance', amount: -71, min: 0 }, // 70 -> -1: fails
      { op: 'HSET', key: h, field: 'never', value: 'run' },
    ]);
    expect(outcome).toMatchObject({ id, status: 'ROLLED_BACK', stepsCompleted: 8, failedStep: 9 });
    expect(outcome.error).toEqual(expect.any(String));
    expect(outcome.error).toMatch(/step 9/);
    expect(outcome.error).toMatch(/HINCRBY/);
    expect(outcome.error).toMatch(/min/);

    expect(await data(h, s)).toEqual(beforeData);
    expect((await t.ok(DATA_SET, { key: fresh })).dataSet.members).toEqual([]);
    expect(await dataSnapshot()).toEqual(beforeKeys);
    expect((await t.ok(SAGA, { id })).saga).toEqual(outcome);
  });

  it('rolls back on a HINCRBY above max, and when the first step fails nothing ran', async () => {
    const h = uid('acct');
    const s = uid('tags');
    await execute(uid('saga'), [{ op: 'HINCRBY', key: h, field: 'stock', amount: 9 }]);
    const beforeKeys = await dataSnapshot();

    const first = await execute(uid('saga'), [
      { op: 'HINCRBY', key: h, field: 'stock', amount: 2, max: 10 },
      { op: 'SADD', key: s, member: 'x' },
    ]);
    expect(first).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 0, failedStep: 1 });
    expect(first.error).toMatch(/max/);

    const later = await execute(uid('saga'), [
      { op: 'SADD', key: s, member: 'x' },
      { op: 'HINCRBY', key: h, field: 'stock', amount: 1, max: 10 },
      { op: 'HINCRBY', key: h, field: 'stock', amount: 1, max: 10 },
    ]);
    expect(later).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 2, failedStep: 3 });
    expect(await data(h, s)).toEqual({ dataHash: { stock: '9' }, dataSet: [] });
    expect(await dataSnapshot()).toEqual(beforeKeys);
  });

  it('rolls back when a step hits a key of the other type', async () => {
    const h = uid('acct');
    const s = uid('tags');
    await execute(uid('saga'), [{ op: 'SADD', key: s, member: 'a' }]);
    const beforeKeys = await dataSnapshot();
    const outcome = await execute(uid('saga'), [
      { op: 'HSET', key: h, field: 'f', value: 'v' },
      { op: 'HSET', key: s, field: 'f', value: 'v' }, // s is a set
    ]);
    expect(outcome).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 1, failedStep: 2 });
    expect(outcome.error).toMatch(/step 2/);
    expect(await dataSnapshot()).toEqual(beforeKeys);
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({});
  });
});

describe('stored outcomes', () => {
  it('saga(id) is null for a saga that never ran', async () => {
    expect(await t.ok(SAGA, { id: uid('saga') })).toEqual({ saga: null });
  });

  it('replaying the same id and steps returns the stored outcome and runs nothing', async () => {
    const h = uid('acct');
    const id = uid('saga');
    const steps: Step[] = [
      { op: 'HINCRBY', key: h, field: 'n', amount: 1 },
      { op: 'HSET', key: h, field: 'last', value: id },
    ];
    const first = await execute(id, steps);
    expect(first).toEqual({ id, status: 'COMPLETED', stepsCompleted: 2, failedStep: null, error: null });
    const before = await t.snapshot();
    // the same steps with their fields in another order are the same steps
    const reordered = steps.map((s) => Object.fromEntries(Object.entries(s).reverse()) as Step);
    expect(await execute(id, reordered)).toEqual(first);
    expect(await execute(id, steps)).toEqual(first);
    expect(await t.snapshot()).toEqual(before);
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({ n: '1', last: id });
  });

  it('a rolled-back saga replays as rolled back even when it would now succeed', async () => {
    const h = uid('acct');
    const id = uid('saga');
    const steps: Step[] = [
      { op: 'SADD', key: h + '-set', member: 'm' },
      { op: 'HINCRBY', key: h, field: 'balance', amount: -10, min: 0 },
    ];
    const first = await execute(id, steps);
    expect(first).toMatchObject({ status: 'ROLLED_BACK', stepsCompleted: 1, failedStep: 2 });
    await execute(uid('saga'), [{ op: 'HINCRBY', key: h, field: 'balance', amount: 50 }]);
    const before = await t.snapshot();
    expect(await execute(id, steps)).toEqual(first);
    expect(await t.snapshot()).toEqual(before);
    expect(await data(h, h + '-set')).toEqual({ dataHash: { balance: '50' }, dataSet: [] });
  });

  it('the same id with other steps is IDEMPOTENCY_CONFLICT', async () => {
    const h = uid('acct');
    const id = uid('saga');
    const steps: Step[] = [{ op: 'HINCRBY', key: h, field: 'n', amount: 1 }];
    await execute(id, steps);
    for (const other of [
      [{ op: 'HINCRBY', key: h, field: 'n', amount: 2 }],
      [{ op: 'HINCRBY', key: h, field: 'n', amount: 1, max: 5 }],
      [{ op: 'HINCRBY', key: uid('acct'), field: 'n', amount: 1 }],
      [...steps, { op: 'HSET', key: h, field: 'x', value: 'y' }],
    ]) {
      await expectGraphQLErrorWithoutWrites(t, EXECUTE, { input: { id, steps: other } }, 'IDEMPOTENCY_CONFLICT');
    }
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({ n: '1' });
  });
});

describe('rejected input', () => {
  it('BAD_USER_INPUT for empty steps and 65 steps (64 is accepted)', async () => {
    const h = uid('acct');
    await expectGraphQLErrorWithoutWrites(t, EXECUTE, { input: { id: uid('saga'), steps: [] } }, 'BAD_USER_INPUT');
    const step = (i: number): Step => ({ op: 'HINCRBY', key: h, field: `f${i % 3}`, amount: 1 });
    const steps65 = Array.from({ length: 65 }, (_, i) => step(i));
    await expectGraphQLErrorWithoutWrites(t, EXECUTE, { input: { id: uid('saga'), steps: steps65 } }, 'BAD_USER_INPUT');
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({});
    const outcome = await execute(uid('saga'), steps65.slice(0, 64));
    expect(outcome).toMatchObject({ status: 'COMPLETED', stepsCompleted: 64 });
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({ f0: '22', f1: '21', f2: '21' });
  });

  it('BAD_USER_INPUT for malformed steps', async () => {
    const h = uid('acct');
    const bad: Record<string, unknown>[] = [
      { op: 'HSET', key: h, field: 'f' }, // HSET without value
      { op: 'HDEL', key: h }, // without field
      { op: 'HINCRBY', key: h, field: 'f' }, // without amount
      { op: 'SADD', key: h }, // without member
      { op: 'HSET', key: h, field: 'f', value: 'v', amount: 1 }, // an operand HSET does not take
      { op: 'SADD', key: h, member: 'm', field: 'f' },
      { op: 'HINCRBY', key: h, field: 'f', amount: 1, min: 5, max: 4 }, // min > max
      { op: 'HSET', key: h, field: '', value: 'v' }, // empty field
      { op: 'HGET', key: h, field: 'f' }, // not a SagaOp
      { op: 'hset', key: h, field: 'f', value: 'v' },
      { op: 'HINCRBY', key: h, field: 'f', amount: 1.5 }, // not an Int
      { op: 'HINCRBY', key: h, field: 'f', amount: 2 ** 31 }, // outside Int
    ];
    for (const step of bad) {
      // each bad step after a good one: the good one must not run either
      const steps = [{ op: 'HSET', key: h, field: 'ok', value: '1' }, step];
      await expectGraphQLErrorWithoutWrites(t, EXECUTE, { input: { id: uid('saga'), steps } }, 'BAD_USER_INPUT');
    }
    expect((await t.ok(DATA_HASH, { key: h })).dataHash.fields).toEqual({});
  });

  it('BAD_USER_INPUT for a data key or saga id with :, { or }', async () => {
    const h = uid('acct');
    for (const key of ['a:b', 'a{b', 'a}b', `{${t.tenant}}:saga:x`, '']) {
      await expectGraphQLErrorWithoutWrites(
        t,
        EXECUTE,
        { input: { id: uid('saga'), steps: [{ op: 'HSET', key: h, field: 'f', value: 'v' }, { op: 'SADD', key, member: 'm' }] } },
        'BAD_USER_INPUT',
      );
      await expectGraphQLErrorWithoutWrites(t, DATA_HASH, { key }, 'BAD_USER_INPUT');
      await expectGraphQLErrorWithoutWrites(t, DATA_SET, { key }, 'BAD_USER_INPUT');
    }
    for (const id of ['s:1', 's{1}', '']) {
      await expectGraphQLErrorWithoutWrites(t, EXECUTE, { input: { id, steps: [{ op: 'HSET', key: h, field: 'f', value: 'v' }] } }, 'BAD_USER_INPUT');
      await expectGraphQLErrorWithoutWrites(t, SAGA, { id }, 'BAD_USER_INPUT');
    }
  });
});

describe('data reads', () => {
  it('dataHash is {} and dataSet is [] for absent keys', async () => {
    const key = uid('nothing');
    expect(await data(key, key)).toEqual({ dataHash: {}, dataSet: [] });
  });

  it('dataSet is sorted and dataHash keeps values as strings', async () => {
    const h = uid('acct');
    const s = uid('tags');
    await execute(uid('saga'), [
      { op: 'SADD', key: s, member: 'pear' },
      { op: 'SADD', key: s, member: 'Apple' },
      { op: 'SADD', key: s, member: 'apple' },
      { op: 'SADD', key: s, member: '10' },
      { op: 'SADD', key: s, member: '9' },
      { op: 'HSET', key: h, field: 'json', value: '{"a":[]}' },
      { op: 'HSET', key: h, field: 'empty', value: '' },
      { op: 'HSET', key: h, field: '1', value: 'one' },
    ]);
    expect(await data(h, s)).toEqual({
      dataHash: { json: '{"a":[]}', empty: '', 1: 'one' },
      dataSet: ['10', '9', 'Apple', 'apple', 'pear'],
    });
  });

  it('reading a set as a hash (or a hash as a set) is BAD_USER_INPUT', async () => {
    const s = uid('tags');
    await execute(uid('saga'), [{ op: 'SADD', key: s, member: 'a' }]);
    await expectGraphQLErrorWithoutWrites(t, DATA_HASH, { key: s }, 'BAD_USER_INPUT');
    const h = uid('acct');
    await execute(uid('saga'), [{ op: 'HSET', key: h, field: 'a', value: 'b' }]);
    await expectGraphQLErrorWithoutWrites(t, DATA_SET, { key: h }, 'BAD_USER_INPUT');
  });
});
