import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Engine } from '../../src/engine/engine.js';
import { createTestEngine, expectRejectedWithoutWrites, snapshotTenant, uniqueTenant } from '../setup/helpers.js';
import { documentMachine } from '../setup/machines.js';

let redis: Redis;
let engine: Engine;

beforeAll(async () => {
  ({ redis, engine } = await createTestEngine());
});
afterAll(() => redis.disconnect());

const doc = documentMachine();

describe('state machines', () => {
  it('defines a machine, derives terminal states, and bumps the version on redefinition', async () => {
    const tenant = uniqueTenant();
    const v1 = await engine.workflows.defineMachine(tenant, doc);
    expect(v1).toEqual({ ...doc, version: 1, terminalStates: ['archived'] });
    const v2 = await engine.workflows.defineMachine(tenant, { ...doc, transitions: [{ from: 'draft', to: ['published'] }] });
    expect(v2.version).toBe(2);
    expect(v2.terminalStates).toEqual(['review', 'published', 'archived']);
    expect((await engine.workflows.machine(tenant, 'doc'))?.version).toBe(2);
    expect((await engine.workflows.machine(tenant, 'doc', 1))?.transitions).toEqual(doc.transitions);
    expect(await engine.workflows.machine(tenant, 'nope')).toBeNull();
  });

  it('creates the built-in order machine once and refuses to redefine it', async () => {
    const tenant = uniqueTenant();
    expect(await engine.workflows.ensureOrderMachine(tenant)).toBe(true);
    expect(await engine.workflows.ensureOrderMachine(tenant)).toBe(false);
    const order = await engine.workflows.machine(tenant, 'order');
    expect(order).toEqual({
      name: 'order',
      version: 1,
      initialState: 'pending',
      states: ['pending', 'processing', 'shipped', 'delivered', 'cancelled', 'returned'],
      transitions: [
        { from: 'pending', to: ['processing', 'cancelled'] },
        { from: 'processing', to: ['shipped', 'cancelled'] },
        { from: 'shipped', to: ['delivered', 'returned'] },
        { from: 'delivered', to: ['returned'] },
      ],
      terminalStates: ['cancelled', 'returned'],
    });
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.defineMachine(tenant, { ...doc, name: 'order' }), 'BAD_USER_INPUT');
    expect((await engine.workflows.machines(tenant)).map((m) => m.name)).toEqual(['order']);
  });

  it.each([
    ['an unknown initial state', { ...doc, initialState: 'nowhere' }],
    ['a transition to an unknown state', { ...doc, transitions: [{ from: 'draft', to: ['gone'] }] }],
    ['a transition from an unknown state', { ...doc, transitions: [{ from: 'gone', to: ['draft'] }] }],
    ['a terminal state with outgoing transitions', { ...doc, terminalStates: ['draft'] }],
    ['an invalid state name', { ...doc, states: [...doc.states, 'has space'] }],
    ['no states', { ...doc, states: [] }],
    ['too many states', { ...doc, states: Array.from({ length: 65 }, (_, i) => `s${i}`), initialState: 's0', transitions: [] }],
    ['a machine name with a colon', { ...doc, name: 'a:b' }],
  ])('rejects %s without writing', async (_label, definition) => {
    const tenant = uniqueTenant();
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.defineMachine(tenant, definition), 'BAD_USER_INPUT');
  });

  it('rejects duplicate states and more than 256 transitions in Lua too', async () => {
    const tenant = uniqueTenant();
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.defineMachine(tenant, { ...doc, states: ['draft', 'draft'] }), 'BAD_USER_INPUT');
    const states = Array.from({ length: 17 }, (_, i) => `s${i}`);
    const transitions = states.map((from) => ({ from, to: states.filter((s) => s !== from) })); // 17*16 = 272
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.workflows.defineMachine(tenant, { name: 'big', initialState: 's0', states, transitions }),
      'BAD_USER_INPUT',
    );
  });
});

describe('workflows', () => {
  it('starts a workflow with a first history entry, an event in the stream and a publish', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    const k = engine.context.keys(tenant);
    const sub = redis.duplicate();
    const received: string[] = [];
    await sub.subscribe(k.workflowChannel());
    sub.on('message', (_channel, message) => received.push(message));

    const wf = await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc', metadata: { tags: [], n: 12345678901234567 } });
    expect(wf).toMatchObject({ id: 'w-1', machine: 'doc', machineVersion: 1, state: 'draft', version: 1, allowedTransitions: ['review'] });
    // client JSON keeps its exact text: [] stays an array (cjson would answer {})
    expect(wf.metadata).toEqual({ tags: [], n: 12345678901234567 });
    expect(wf.createdAt).toBeInstanceOf(Date);

    const history = await engine.workflows.history(tenant, 'w-1', {});
    expect(history.items).toEqual([{ from: null, to: 'draft', at: wf.createdAt, version: 1, metadata: { tags: [], n: 12345678901234567 } }]);
    const stream = await redis.xrange(k.events(), '-', '+');
    expect(stream).toHaveLength(1);
    await expect.poll(() => received.length).toBe(1);
    const event = JSON.parse(received[0]!);
    expect(event).toMatchObject({ eventId: stream[0]![0], type: 'WORKFLOW_TRANSITION', workflowId: 'w-1', machine: 'doc', from: null, to: 'draft', version: 1 });
    sub.disconnect();
  });

  it('generates an id when none is given', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    const wf = await engine.workflows.start(tenant, { machine: 'doc' });
    expect(wf.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('rejects a duplicate id, an unknown machine, the order machine, bad ids and oversized metadata without writing', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' });
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.start(tenant, { id: 'w-1', machine: 'doc' }), 'ALREADY_EXISTS');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.start(tenant, { id: 'w-2', machine: 'ghost' }), 'NOT_FOUND');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.start(tenant, { id: 'w-2', machine: 'order' }), 'BAD_USER_INPUT');
    for (const id of ['a{b}', 'a:b', '', '-lead', 'x'.repeat(129)]) {
      await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.start(tenant, { id, machine: 'doc' }), 'BAD_USER_INPUT');
    }
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.workflows.start(tenant, { id: 'w-3', machine: 'doc', metadata: { blob: 'x'.repeat(16 * 1024) } }),
      'BAD_USER_INPUT',
    );
  });

  it('rejects bad input in Lua as well, when the typed layer is bypassed', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    const k = engine.context.keys(tenant);
    const block = k.workflowBlock('w-1', 'doc');
    const args = engine.context.eventArgs(k);
    const before = await snapshotTenant(redis, tenant);
    await expect(redis.call('FCALL', 'atomflow_wf_start', block.length, ...block, ...args, 'a{b}', 'doc', '[]')).rejects.toThrow(/^BAD_USER_INPUT /);
    await expect(redis.call('FCALL', 'atomflow_wf_start', block.length, ...block, ...args, 'w-1', 'doc', '{"not":"pairs"')).rejects.toThrow(/^BAD_USER_INPUT /);
    const big = JSON.stringify([['"k"', JSON.stringify('x'.repeat(16400))]]);
    await expect(redis.call('FCALL', 'atomflow_wf_start', block.length, ...block, ...args, 'w-1', 'doc', big)).rejects.toThrow(/^BAD_USER_INPUT /);
    expect(await snapshotTenant(redis, tenant)).toEqual(before);
  });

  it('transitions with compare-and-set, expected version and merged metadata', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    await engine.workflows.start(tenant, { id: 'w-1', machine: 'doc', metadata: { owner: 'ann', n: 1 } });
    const moved = await engine.workflows.transition(tenant, { id: 'w-1', to: 'review', from: 'draft', expectedVersion: 1, metadata: { n: 2, reviewer: 'bob' } });
    expect(moved).toMatchObject({ state: 'review', version: 2, allowedTransitions: ['draft', 'published'] });
    expect(moved.metadata).toEqual({ owner: 'ann', n: 2, reviewer: 'bob' });
    expect(moved.updatedAt.getTime()).toBeGreaterThanOrEqual(moved.createdAt.getTime());

    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'w-1', to: 'published', from: 'draft' }), 'STATE_CONFLICT');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'w-1', to: 'published', expectedVersion: 1 }), 'VERSION_CONFLICT');
    const invalid = await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'w-1', to: 'archived' }), 'INVALID_TRANSITION');
    expect(invalid.message).toBe('cannot move workflow w-1 from review to archived');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'w-1', to: 'nowhere' }), 'INVALID_TRANSITION');
    await expectRejectedWithoutWrites(redis, tenant, () => engine.workflows.transition(tenant, { id: 'ghost', to: 'review' }), 'NOT_FOUND');
    await expectRejectedWithoutWrites(
      redis,
      tenant,
      () => engine.workflows.transition(tenant, { id: 'w-1', to: 'published', metadata: { blob: 'x'.repeat(16 * 1024 - 20) } }),
      'BAD_USER_INPUT',
    );

    const history = await engine.workflows.history(tenant, 'w-1', {});
    expect(history.items.map((e) => [e.from, e.to, e.version, e.metadata])).toEqual([
      [null, 'draft', 1, { owner: 'ann', n: 1 }],
      ['draft', 'review', 2, { n: 2, reviewer: 'bob' }],
    ]);
  });

  it('keeps the machine version a workflow started with', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    await engine.workflows.start(tenant, { id: 'old', machine: 'doc' });
    await engine.workflows.defineMachine(tenant, { ...doc, transitions: [{ from: 'draft', to: ['published'] }] });
    await engine.workflows.start(tenant, { id: 'new', machine: 'doc' });
    expect((await engine.workflows.get(tenant, 'old'))?.allowedTransitions).toEqual(['review']);
    expect((await engine.workflows.get(tenant, 'new'))?.allowedTransitions).toEqual(['published']);
    await expect(engine.workflows.transition(tenant, { id: 'old', to: 'published' })).rejects.toMatchObject({ code: 'INVALID_TRANSITION' });
    expect((await engine.workflows.transition(tenant, { id: 'new', to: 'published' })).machineVersion).toBe(2);
  });

  it('pages history oldest first and lists workflows newest update first by machine and state', async () => {
    const tenant = uniqueTenant();
    await engine.workflows.defineMachine(tenant, doc);
    await engine.workflows.defineMachine(tenant, { ...doc, name: 'other' });
    for (const id of ['a', 'b', 'c', 'd']) await engine.workflows.start(tenant, { id, machine: 'doc' });
    await engine.workflows.start(tenant, { id: 'x', machine: 'other' });
    await engine.workflows.transition(tenant, { id: 'b', to: 'review' });
    await engine.workflows.transition(tenant, { id: 'b', to: 'draft' });
    await engine.workflows.transition(tenant, { id: 'b', to: 'review' });
    await engine.workflows.transition(tenant, { id: 'a', to: 'review' });

    const first = await engine.workflows.history(tenant, 'b', { first: 2 });
    expect(first.items.map((e) => e.to)).toEqual(['draft', 'review']);
    const second = await engine.workflows.history(tenant, 'b', { first: 2, after: first.nextCursor });
    expect(second.items.map((e) => e.to)).toEqual(['draft', 'review']);
    expect(second.nextCursor).toBeNull();

    const all = await engine.workflows.list(tenant, {});
    expect(all.items.map((w) => w.id).slice(0, 2)).toEqual(['a', 'b']);
    expect(all.items).toHaveLength(5);
    const inReview = await engine.workflows.list(tenant, { machine: 'doc', state: 'review' });
    expect(inReview.items.map((w) => w.id)).toEqual(['a', 'b']);
    const drafts = await engine.workflows.list(tenant, { state: 'draft' });
    expect(drafts.items.map((w) => w.id).sort()).toEqual(['c', 'd', 'x']);

    const ids: string[] = [];
    let after: string | null = null;
    do {
      const page = await engine.workflows.list(tenant, { machine: 'doc', first: 1, after });
      ids.push(...page.items.map((w) => w.id));
      after = page.nextCursor;
    } while (after);
    expect(ids.slice(0, 2)).toEqual(['a', 'b']);
    expect(ids.sort()).toEqual(['a', 'b', 'c', 'd']);
    await expect(engine.workflows.list(tenant, { first: 0 })).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    await expect(engine.workflows.list(tenant, { after: '!!' })).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    expect(await engine.workflows.get(tenant, 'ghost')).toBeNull();
  });
});
