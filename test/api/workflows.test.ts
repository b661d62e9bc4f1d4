/**
 * State machines and workflows over GraphQL: what a client sees over HTTP and WebSocket, and what
 * the tenant holds in Redis afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, subscriberCount, type Subscription, type TestServer, uid } from './harness.js';
import { documentMachine } from '../setup/machines.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A machine or state name no other test of this file uses. */
const name = (prefix: string) => `${prefix}_${uid('').slice(1).replace(/-/g, '_')}`;

const keys = () => t.server.engine.context.keys(t.tenant);

const MACHINE_FIELDS = 'name version initialState states terminalStates transitions { from to }';
const WORKFLOW_FIELDS = 'id machine machineVersion state version metadata createdAt updatedAt allowedTransitions';

const DEFINE = `mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { ${MACHINE_FIELDS} } }`;
const START = `mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { ${WORKFLOW_FIELDS} } }`;
const TRANSITION = `mutation($input: TransitionWorkflowInput!) { transitionWorkflow(input: $input) { ${WORKFLOW_FIELDS} } }`;
const GET = `query($id: ID!) { workflow(id: $id) { ${WORKFLOW_FIELDS} } }`;
const LIST = `query($machine: String, $state: String, $first: Int, $after: String) {
  workflows(machine: $machine, state: $state, first: $first, after: $after) { items { id machine state version updatedAt } nextCursor } }`;
const HISTORY = `query($id: ID!, $first: Int, $after: String) {
  workflow(id: $id) { history(first: $first, after: $after) { entries { from to at version metadata } nextCursor } } }`;

const reviewMachine = documentMachine;

async function define(input: Record<string, unknown>) {
  return (await t.ok(DEFINE, { input })).defineStateMachine;
}

async function start(input: Record<string, unknown>) {
  return (await t.ok(START, { input })).startWorkflow;
}

async function move(input: Record<string, unknown>) {
  return (await t.ok(TRANSITION, { input })).transitionWorkflow;
}

/** Waits (on the clock, not a fixed sleep) until Redis' TIME has passed `iso`, so the next write is strictly newer. */
async function clockPast(iso: string) {
  const ms = Date.parse(iso);
  await expect.poll(async () => {
    const [s, us] = (await t.redis.time()) as [number | string, number | string];
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }, { interval: 2 }).toBeGreaterThan(ms);
}

/** Every page of a listing, following nextCursor until it is null. */
async function allPages(vars: Record<string, unknown>, first: number) {
  const pages: { items: any[]; nextCursor: string | null }[] = [];
  let after: string | null = null;
  do {
    const page: { items: any[]; nextCursor: string | null } = (await t.ok(LIST, { ...vars, first, after })).workflows;
    pages.push(page);
    after = page.nextCursor;
    expect(pages.length).toBeLessThan(50);
  } while (after !== null);
  return pages;
}

async function closeSubscription(sub: Subscription) {
  sub.close();
  // no listener outlives its test: wait until the server has let go of the channel
  await expect.poll(() => subscriberCount(t.redis, keys().workflowChannel())).toBe(0);
}

describe('state machines', () => {
  it('defines a machine with terminal states defaulting to those without a way out', async () => {
    const m = name('doc');
    const machine = await define(reviewMachine(m));
    expect(machine).toEqual({ ...reviewMachine(m), version: 1, terminalStates: ['archived'] });
    expect((await t.ok(`query($n: ID!) { stateMachine(name: $n) { ${MACHINE_FIELDS} } }`, { n: m })).stateMachine).toEqual(machine);
    // stored in Redis as version 1
    expect(await t.redis.hget(keys().machine(m), 'current')).toBe('1');
    expect(await t.redis.sismember(keys().machineNames(), m)).toBe(1);
  });

  it('keeps explicit terminal states', async () => {
    const m = name('explicit');
    const machine = await define({
      name: m,
      initialState: 'a',
      states: ['a', 'b', 'c'],
      transitions: [{ from: 'a', to: ['b'] }],
      terminalStates: ['c'],
    });
    expect(machine.terminalStates).toEqual(['c']);
    expect(machine.transitions).toEqual([{ from: 'a', to: ['b'] }]);
  });

  it('bumps the version on redefinition; running workflows keep theirs', async () => {
    const m = name('versioned');
    await define(reviewMachine(m));
    const old = await start({ machine: m, id: uid('old') });
    expect(old.machineVersion).toBe(1);

    const v2 = await define({ ...reviewMachine(m), transitions: [{ from: 'draft', to: ['published'] }] });
    expect(v2.version).toBe(2);
    expect(v2.terminalStates).toEqual(['review', 'published', 'archived']);
    expect((await t.ok(`query($n: ID!) { stateMachine(name: $n) { version transitions { from to } } }`, { n: m })).stateMachine).toEqual({
      version: 2,
      transitions: [{ from: 'draft', to: ['published'] }],
    });
    expect(await t.redis.hget(keys().machine(m), 'current')).toBe('2');

    // the old workflow still follows version 1 ...
    const again = (await t.ok(GET, { id: old.id })).workflow;
    expect(again).toMatchObject({ machineVersion: 1, allowedTransitions: ['review'] });
    expect((await move({ id: old.id, to: 'review' })).state).toBe('review');
    // ... and a new one follows version 2
    const fresh = await start({ machine: m });
    expect(fresh).toMatchObject({ machineVersion: 2, allowedTransitions: ['published'] });
    expect((await move({ id: fresh.id, to: 'published' })).allowedTransitions).toEqual([]);

    const v3 = await define(reviewMachine(m));
    expect(v3.version).toBe(3);
  });

  it('answers null for an unknown machine', async () => {
    expect((await t.ok(`query { stateMachine(name: "noSuchMachine") { name } }`)).stateMachine).toBeNull();
  });

  it('lists every machine by name, the built-in order machine included', async () => {
    const a = name('zz_last');
    const b = name('aa_first');
    await define(reviewMachine(a));
    await define(reviewMachine(b));
    const machines: any[] = (await t.ok(`query { stateMachines { ${MACHINE_FIELDS} } }`)).stateMachines;
    const names = machines.map((x) => x.name);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining([a, b, 'order']));
    expect(machines.find((x) => x.name === 'order')).toEqual({
      name: 'order',
      version: 1,
      initialState: 'pending',
      states: ['pending', 'processing', 'shipped', 'delivered', 'cancelled', 'returned'],
      terminalStates: ['cancelled', 'returned'],
      transitions: [
        { from: 'pending', to: ['processing', 'cancelled'] },
        { from: 'processing', to: ['shipped', 'cancelled'] },
        { from: 'shipped', to: ['delivered', 'returned'] },
        { from: 'delivered', to: ['returned'] },
      ],
    });
    expect(machines.find((x) => x.name === a)).toEqual({ ...reviewMachine(a), version: 1, terminalStates: ['archived'] });
  });
});

describe('workflows', () => {
  it('starts a workflow with an id and metadata', async () => {
    const m = name('start');
    await define(reviewMachine(m));
    const id = uid('wf');
    const metadata = { customer: 'c-1', tags: [], nested: { a: [1, 2], b: null }, n: 42, ok: true };
    const before = Date.now();
    const wf = await start({ id, machine: m, metadata });
    expect(wf).toEqual({
      id,
      machine: m,
      machineVersion: 1,
      state: 'draft',
      version: 1,
      metadata,
      createdAt: expect.stringMatching(ISO_UTC),
      updatedAt: expect.stringMatching(ISO_UTC),
      allowedTransitions: ['review'],
    });
    expect(wf.updatedAt).toBe(wf.createdAt);
    expect(Date.parse(wf.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(wf.createdAt)).toBeLessThanOrEqual(Date.now() + 1000);

    // the same workflow reads back, and Redis holds it with its first history entry
    expect((await t.ok(GET, { id })).workflow).toEqual(wf);
    expect(await t.redis.hget(keys().workflow(id), 'state')).toBe('draft');
    expect(await t.redis.llen(keys().workflowHistory(id))).toBe(1);
    const history = (await t.ok(HISTORY, { id })).workflow.history;
    expect(history).toEqual({ entries: [{ from: null, to: 'draft', at: wf.createdAt, version: 1, metadata }], nextCursor: null });
  });

  it('generates an id when none is given, and metadata defaults to {}', async () => {
    const m = name('gen');
    await define(reviewMachine(m));
    const a = await start({ machine: m });
    const b = await start({ machine: m, id: null });
    expect(a.id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/);
    expect(b.id).not.toBe(a.id);
    expect(a.metadata).toEqual({});
    expect((await t.ok(GET, { id: a.id })).workflow).toEqual(a);
    expect(await t.redis.exists(keys().workflow(a.id), keys().workflow(b.id))).toBe(2);
  });

  it('transitions with a compare-and-set on state and version, merging metadata key by key', async () => {
    const m = name('move');
    await define(reviewMachine(m));
    const id = uid('wf');
    const started = await start({ id, machine: m, metadata: { a: 1, b: { c: 1 }, keep: 'yes' } });

    await clockPast(started.updatedAt);
    const moved = await move({ id, to: 'review', from: 'draft', metadata: { b: { d: 2 }, e: [3] } });
    expect(moved).toMatchObject({
      id,
      state: 'review',
      version: 2,
      metadata: { a: 1, b: { d: 2 }, keep: 'yes', e: [3] },
      createdAt: started.createdAt,
      allowedTransitions: ['draft', 'published'],
    });
    expect(moved.updatedAt).toMatch(ISO_UTC);
    expect(Date.parse(moved.updatedAt)).toBeGreaterThan(Date.parse(started.updatedAt));

    const published = await move({ id, to: 'published', expectedVersion: 2 });
    expect(published).toMatchObject({ state: 'published', version: 3, allowedTransitions: ['archived'] });
    const archived = await move({ id, to: 'archived', from: 'published', expectedVersion: 3, metadata: { a: 'x' } });
    expect(archived).toMatchObject({ state: 'archived', version: 4, allowedTransitions: [], metadata: { a: 'x', b: { d: 2 }, keep: 'yes', e: [3] } });

    // history entries carry each transition's own metadata, not the merged result
    const entries = (await t.ok(HISTORY, { id })).workflow.history.entries;
    expect(entries.map((e: any) => [e.from, e.to, e.version, e.metadata])).toEqual([
      [null, 'draft', 1, { a: 1, b: { c: 1 }, keep: 'yes' }],
      ['draft', 'review', 2, { b: { d: 2 }, e: [3] }],
      ['review', 'published', 3, {}],
      ['published', 'archived', 4, { a: 'x' }],
    ]);
    expect(entries.every((e: any) => ISO_UTC.test(e.at))).toBe(true);
    expect(entries[1].at).toBe(moved.updatedAt);

    // and Redis agrees
    expect(await t.redis.hmget(keys().workflow(id), 'state', 'version')).toEqual(['archived', '4']);
    expect((await t.ok(GET, { id })).workflow).toEqual(archived);
  });

  it('answers null for an unknown workflow', async () => {
    expect((await t.ok(GET, { id: uid('missing') })).workflow).toBeNull();
  });

  it('pages through history oldest first', async () => {
    const m = name('loop');
    await define({ name: m, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }, { from: 'b', to: ['a'] }] });
    const id = uid('wf');
    await start({ id, machine: m, metadata: { step: 0 } });
    for (let i = 1; i <= 6; i++) await move({ id, to: i % 2 ? 'b' : 'a', metadata: { step: i } });

    const all = (await t.ok(HISTORY, { id })).workflow.history;
    expect(all.nextCursor).toBeNull();
    expect(all.entries.map((e: any) => e.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all.entries.map((e: any) => e.metadata.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const times = all.entries.map((e: any) => Date.parse(e.at));
    expect(times).toEqual([...times].sort((x, y) => x - y));

    const pages: any[] = [];
    let after: string | null = null;
    do {
      const page: any = (await t.ok(HISTORY, { id, first: 3, after })).workflow.history;
      pages.push(page);
      after = page.nextCursor;
    } while (after !== null && pages.length < 10);
    expect(pages.map((p) => p.entries.length)).toEqual([3, 3, 1]);
    expect(pages.flatMap((p) => p.entries)).toEqual(all.entries);
    expect(typeof pages[0].nextCursor).toBe('string');

    // a page size that divides the history exactly ends with a null cursor, not an empty page
    const exact = (await t.ok(HISTORY, { id, first: 7 })).workflow.history;
    expect(exact.entries).toHaveLength(7);
    expect(exact.nextCursor).toBeNull();
  });
});

describe('listing workflows', () => {
  it('filters by machine, by state, and by both', async () => {
    const m1 = name('listA');
    const m2 = name('listB');
    // a state name used by these two machines only, so listing by state alone sees just them
    const s = name('s');
    const def = (n: string) => ({ name: n, initialState: 'start', states: ['start', s], transitions: [{ from: 'start', to: [s] }] });
    await define(def(m1));
    await define(def(m2));
    const ids = { m1: [uid('a'), uid('a'), uid('a')], m2: [uid('b'), uid('b')] };
    for (const id of ids.m1) await start({ id, machine: m1 });
    for (const id of ids.m2) await start({ id, machine: m2 });
    await move({ id: ids.m1[0], to: s });
    await move({ id: ids.m2[0], to: s });

    const list = async (vars: Record<string, unknown>) => {
      const page = (await t.ok(LIST, vars)).workflows;
      expect(page.nextCursor).toBeNull();
      return page.items;
    };
    const idsOf = (items: any[]) => items.map((w) => w.id).sort();

    expect(idsOf(await list({ machine: m1 }))).toEqual([...ids.m1].sort());
    expect(idsOf(await list({ machine: m2 }))).toEqual([...ids.m2].sort());
    expect(idsOf(await list({ state: s }))).toEqual([ids.m1[0], ids.m2[0]].sort());
    const both = await list({ machine: m1, state: s });
    expect(both).toEqual([expect.objectContaining({ id: ids.m1[0], machine: m1, state: s, version: 2 })]);
    expect(idsOf(await list({ machine: m1, state: 'start' }))).toEqual([ids.m1[1], ids.m1[2]].sort());
    // without a filter: every workflow of the tenant, these among them
    const everything = idsOf((await allPages({}, 100)).flatMap((p) => p.items));
    expect(everything).toEqual(expect.arrayContaining([...ids.m1, ...ids.m2]));
    // an unknown machine or state lists nothing
    expect(await list({ machine: name('ghost') })).toEqual([]);
    expect(await list({ machine: m1, state: name('ghost') })).toEqual([]);
  });

  it('lists the most recently updated first', async () => {
    const m = name('order_by');
    await define(reviewMachine(m));
    const started = [];
    for (let i = 0; i < 4; i++) {
      if (started.length) await clockPast(started[started.length - 1].updatedAt);
      started.push(await start({ id: `w${i}-${uid('')}`, machine: m }));
    }
    const ids = started.map((w) => w.id);
    let items = (await t.ok(LIST, { machine: m })).workflows.items;
    expect(items.map((w: any) => w.id)).toEqual([...ids].reverse());

    // moving the oldest makes it the newest
    await clockPast(started[3].updatedAt);
    await move({ id: ids[0], to: 'review' });
    items = (await t.ok(LIST, { machine: m })).workflows.items;
    expect(items.map((w: any) => w.id)).toEqual([ids[0], ids[3], ids[2], ids[1]]);
    const times = items.map((w: any) => Date.parse(w.updatedAt));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    // a workflow appears once, under its new state only
    expect((await t.ok(LIST, { machine: m, state: 'draft' })).workflows.items.map((w: any) => w.id)).toEqual([ids[3], ids[2], ids[1]]);
    expect((await t.ok(LIST, { machine: m, state: 'review' })).workflows.items.map((w: any) => w.id)).toEqual([ids[0]]);
  });

  it('pages with nextCursor until it is null, with and without filters', async () => {
    const m = name('paged');
    await define(reviewMachine(m));
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await start({ machine: m })).id);
    for (const id of ids.slice(0, 5)) await move({ id, to: 'review' });

    for (const [vars, count] of [
      [{ machine: m }, 7],
      [{ machine: m, state: 'review' }, 5],
      [{ machine: m, state: 'draft' }, 2],
    ] as const) {
      const full = (await t.ok(LIST, { ...vars, first: 100 })).workflows;
      expect(full.items).toHaveLength(count);
      expect(full.nextCursor).toBeNull();
      const pages = await allPages(vars, 2);
      expect(pages.map((p) => p.items.length)).toEqual(Array.from({ length: Math.ceil(count / 2) }, (_, i) => Math.min(2, count - 2 * i)));
      expect(pages.slice(0, -1).every((p) => typeof p.nextCursor === 'string')).toBe(true);
      expect(pages.flatMap((p) => p.items)).toEqual(full.items);
    }

    // the default page size is 20
    const many = name('many');
    await define(reviewMachine(many));
    for (let i = 0; i < 21; i++) await start({ machine: many });
    const first = (await t.ok(LIST, { machine: many })).workflows;
    expect(first.items).toHaveLength(20);
    const rest = (await t.ok(LIST, { machine: many, after: first.nextCursor })).workflows;
    expect(rest.items).toHaveLength(1);
    expect(rest.nextCursor).toBeNull();
    expect(new Set([...first.items, ...rest.items].map((w: any) => w.id)).size).toBe(21);
  });
});

describe('workflowEvents', () => {
  const EVENTS = `subscription($workflowId: ID, $machine: String) {
    workflowEvents(workflowId: $workflowId, machine: $machine) { eventId workflowId machine from to version at metadata } }`;

  it('delivers every start and transition to an unfiltered subscriber, with the stream entry id', async () => {
    const m1 = name('evA');
    const m2 = name('evB');
    await define(reviewMachine(m1));
    await define(reviewMachine(m2));
    const sub = await t.subscribe(EVENTS);
    const w1 = await start({ machine: m1, metadata: { who: 'one' } });
    const w2 = await start({ machine: m2 });
    const moved = await move({ id: w1.id, to: 'review', metadata: { note: [1] } });
    const events = (await sub.waitFor(3)).map((e) => e.workflowEvents);
    await closeSubscription(sub);

    expect(events).toEqual([
      { eventId: expect.any(String), workflowId: w1.id, machine: m1, from: null, to: 'draft', version: 1, at: w1.createdAt, metadata: { who: 'one' } },
      { eventId: expect.any(String), workflowId: w2.id, machine: m2, from: null, to: 'draft', version: 1, at: w2.createdAt, metadata: {} },
      { eventId: expect.any(String), workflowId: w1.id, machine: m1, from: 'draft', to: 'review', version: 2, at: moved.updatedAt, metadata: { note: [1] } },
    ]);
    expect(events.every((e) => ISO_UTC.test(e.at))).toBe(true);

    // eventId is the id of the entry in the tenant's event stream, which holds the same event
    for (const event of events) {
      const entries = await t.redis.xrange(keys().events(), event.eventId, event.eventId);
      expect(entries).toHaveLength(1);
      const [entryId, fields] = entries[0]!;
      expect(entryId).toBe(event.eventId);
      const record: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) record[fields[i]!] = fields[i + 1]!;
      expect(record.type).toBe('WORKFLOW_TRANSITION');
      const data = JSON.parse(record.data!);
      expect(data).toMatchObject({ workflowId: event.workflowId, machine: event.machine, from: event.from, to: event.to, version: event.version, metadata: event.metadata });
      expect(new Date(data.at).toISOString()).toBe(event.at);
    }
    // stream ids grow
    const ids = events.map((e) => e.eventId.split('-').map(Number));
    for (let i = 1; i < ids.length; i++) {
      expect(ids[i]![0]! > ids[i - 1]![0]! || (ids[i]![0] === ids[i - 1]![0] && ids[i]![1]! > ids[i - 1]![1]!)).toBe(true);
    }
  });

  it('filters by workflowId', async () => {
    const m = name('evW');
    await define(reviewMachine(m));
    const mine = uid('mine');
    const other = await start({ machine: m });
    const sub = await t.subscribe(EVENTS, { workflowId: mine });
    // an event of another workflow first, then ours
    await move({ id: other.id, to: 'review' });
    await start({ id: mine, machine: m });
    await move({ id: other.id, to: 'draft' });
    await move({ id: mine, to: 'review' });
    const events = (await sub.waitFor(2)).map((e) => e.workflowEvents);
    await closeSubscription(sub);
    expect(sub.errors).toEqual([]);
    expect(events.map((e) => [e.workflowId, e.from, e.to, e.version])).toEqual([
      [mine, null, 'draft', 1],
      [mine, 'draft', 'review', 2],
    ]);
  });

  it('filters by machine: a subscriber to X does not receive Y', async () => {
    const x = name('evX');
    const y = name('evY');
    await define(reviewMachine(x));
    await define(reviewMachine(y));
    const sub = await t.subscribe(EVENTS, { machine: x });
    const wy = await start({ machine: y });
    const wx = await start({ machine: x });
    const events = (await sub.waitFor(1)).map((e) => e.workflowEvents);
    // Y's event was published before X's on the same channel, so it would have arrived first
    expect(events).toEqual([expect.objectContaining({ workflowId: wx.id, machine: x, from: null, to: 'draft', version: 1 })]);
    await move({ id: wy.id, to: 'review' });
    await move({ id: wx.id, to: 'review' });
    const all = (await sub.waitFor(2)).map((e) => e.workflowEvents);
    await closeSubscription(sub);
    expect(all.map((e) => [e.machine, e.workflowId, e.to])).toEqual([
      [x, wx.id, 'draft'],
      [x, wx.id, 'review'],
    ]);
  });

  it('filters by workflowId and machine together', async () => {
    const m = name('evBoth');
    const other = name('evOther');
    await define(reviewMachine(m));
    await define(reviewMachine(other));
    const id = uid('both');
    // first an event of the other machine, then one of the right machine but another workflow,
    // then the one that matches both filters
    const sub = await t.subscribe(EVENTS, { workflowId: id, machine: m });
    await start({ machine: other });
    await start({ machine: m });
    await start({ id, machine: m });
    const events = (await sub.waitFor(1)).map((e) => e.workflowEvents);
    await closeSubscription(sub);
    expect(events).toEqual([expect.objectContaining({ workflowId: id, machine: m, to: 'draft' })]);
  });
});
