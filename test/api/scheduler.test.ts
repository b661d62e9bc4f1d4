/**
 * Scheduled transitions over GraphQL: scheduling, cancelling and reading entries with the worker
 * off, and with the worker on (tickMs 50) that due entries are applied within a second of runAt,
 * show up as workflowEvents, and end FAILED when their transition is no longer valid.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  expectGraphQLErrorWithoutWrites,
  startTestServer,
  subscriberCount,
  type Subscription,
  type TestServer,
  uid,
} from './harness.js';

/** Worker off: entries stay PENDING. */
let t: TestServer;
/** Worker on, ticking every 50 ms, in a tenant of its own. */
let w: TestServer;
beforeAll(async () => {
  [t, w] = await Promise.all([startTestServer(), startTestServer({ config: { worker: { enabled: true, tickMs: 50 } as any } })]);
});
afterAll(async () => {
  await Promise.all([t?.close(), w?.close()]);
});

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ENTRY_FIELDS = `id workflowId to runAt status error executedAt`;
const SCHEDULE = `mutation($input: ScheduleTransitionInput!) { scheduleTransition(input: $input) { ${ENTRY_FIELDS} } }`;
const CANCEL = `mutation($id: ID!) { cancelScheduledTransition(id: $id) { ${ENTRY_FIELDS} } }`;
const ENTRY = `query($id: ID!) { scheduledTransition(id: $id) { ${ENTRY_FIELDS} } }`;
const WORKFLOW = `query($id: ID!) { workflow(id: $id) { id state version updatedAt history { entries { from to version metadata } } } }`;
const TRANSITION = `mutation($input: TransitionWorkflowInput!) { transitionWorkflow(input: $input) { state version } }`;
const WORKFLOW_EVENTS = `subscription($workflowId: ID) { workflowEvents(workflowId: $workflowId) { eventId workflowId machine from to version at metadata } }`;

async function ok<T = Record<string, any>>(server: TestServer, query: string, variables?: Record<string, unknown>): Promise<T> {
  const res = await server.gql<T>(query, variables);
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  expect(res.status).toBe(200);
  return res.data as T;
}

/** A machine a -> b -> c, a -> d (c and d terminal), and a workflow of it in state a. */
async function workflowIn(server: TestServer): Promise<{ id: string; machine: string }> {
  const machine = uid('m').replace(/-/g, '_');
  await ok(server, `mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name } }`, {
    input: {
      name: machine,
      initialState: 'a',
      states: ['a', 'b', 'c', 'd'],
      transitions: [
        { from: 'a', to: ['b', 'd'] },
        { from: 'b', to: ['c'] },
      ],
    },
  });
  const id = uid('w');
  await ok(server, `mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id } }`, { input: { id, machine } });
  return { id, machine };
}

async function schedule(server: TestServer, input: Record<string, unknown>) {
  return (await ok(server, SCHEDULE, { input })).scheduleTransition;
}

async function entry(server: TestServer, id: string) {
  return (await ok(server, ENTRY, { id })).scheduledTransition;
}

async function workflow(server: TestServer, id: string) {
  return (await ok(server, WORKFLOW, { id })).workflow;
}

/** Waits until the worker has settled the entry (DONE or FAILED) and returns it. */
async function settled(server: TestServer, id: string, timeoutMs = 3000) {
  await expect.poll(async () => (await entry(server, id)).status, { timeout: timeoutMs, interval: 25 }).not.toBe('PENDING');
  return entry(server, id);
}

describe('scheduling (worker off)', () => {
  it('scheduleTransition answers a PENDING entry with runAt echoed as ISO UTC', async () => {
    const wf = await workflowIn(t);
    const created = await schedule(t, { workflowId: wf.id, to: 'b', runAt: '2030-01-02T03:04:05.678+02:00', metadata: { reason: 'timer' } });
    expect(created).toEqual({
      id: expect.any(String),
      workflowId: wf.id,
      to: 'b',
      runAt: '2030-01-02T01:04:05.678Z',
      status: 'PENDING',
      error: null,
      executedAt: null,
    });
    expect(created.id.length).toBeGreaterThan(0);
    expect(await entry(t, created.id)).toEqual(created);
    // scheduling moves nothing
    expect(await workflow(t, wf.id)).toMatchObject({ state: 'a', version: 1 });

    const utc = await schedule(t, { workflowId: wf.id, to: 'b', runAt: '2031-06-30T23:59:59Z' });
    expect(utc.runAt).toBe('2031-06-30T23:59:59.000Z');
    expect(utc.runAt).toMatch(ISO_UTC);
    expect(utc.id).not.toBe(created.id);
  });

  it('scheduledTransition is null for an unknown id', async () => {
    expect(await ok(t, ENTRY, { id: uid('s') })).toEqual({ scheduledTransition: null });
  });

  it('NOT_FOUND for an unknown workflow', async () => {
    await expectGraphQLErrorWithoutWrites(t, SCHEDULE, { input: { workflowId: uid('w'), to: 'b', runAt: '2030-01-01T00:00:00Z' } }, 'NOT_FOUND');
  });

  it('BAD_USER_INPUT for a target that is not a state of the machine, and for malformed input', async () => {
    const wf = await workflowIn(t);
    const base = { workflowId: wf.id, to: 'b', runAt: '2030-01-01T00:00:00Z' };
    const res = await expectGraphQLErrorWithoutWrites(t, SCHEDULE, { input: { ...base, to: 'zzz' } }, 'BAD_USER_INPUT');
    expect(res.errors?.[0]?.message).toMatch(/zzz/);
    for (const change of [
      { to: 'not a name' },
      { to: 'b:c' },
      { workflowId: 'w:1' },
      { workflowId: '{x}' },
      { runAt: 'tomorrow' },
      { runAt: '2030-13-01T00:00:00Z' },
      { runAt: 1893456000000 },
      { metadata: ['not', 'an', 'object'] },
      { metadata: 'text' },
      { metadata: { big: 'x'.repeat(17 * 1024) } },
    ]) {
      await expectGraphQLErrorWithoutWrites(t, SCHEDULE, { input: { ...base, ...change } }, 'BAD_USER_INPUT');
    }
  });

  it('accepts a target that is not allowed from the current state (decided when it runs)', async () => {
    const wf = await workflowIn(t);
    // a -> c is not a transition of the machine, but c is one of its states
    const created = await schedule(t, { workflowId: wf.id, to: 'c', runAt: '2030-01-01T00:00:00Z' });
    expect(created).toMatchObject({ workflowId: wf.id, to: 'c', status: 'PENDING' });
  });

  it('cancelScheduledTransition cancels a PENDING entry once; NOT_FOUND for an unknown id', async () => {
    const wf = await workflowIn(t);
    const created = await schedule(t, { workflowId: wf.id, to: 'b', runAt: '2030-01-01T00:00:00Z' });
    const cancelled = (await ok(t, CANCEL, { id: created.id })).cancelScheduledTransition;
    expect(cancelled).toEqual({ ...created, status: 'CANCELLED' });
    expect(await entry(t, created.id)).toEqual(cancelled);
    const again = await expectGraphQLErrorWithoutWrites(t, CANCEL, { id: created.id }, 'STATE_CONFLICT');
    expect(again.errors?.[0]?.message).toMatch(/CANCELLED/);
    await expectGraphQLErrorWithoutWrites(t, CANCEL, { id: uid('s') }, 'NOT_FOUND');
    await expectGraphQLErrorWithoutWrites(t, CANCEL, { id: 'a:b' }, 'BAD_USER_INPUT');
    await expectGraphQLErrorWithoutWrites(t, ENTRY, { id: 'a{b}' }, 'BAD_USER_INPUT');
  });

  it('with the worker off, an entry already due stays PENDING', async () => {
    const wf = await workflowIn(t);
    const created = await schedule(t, { workflowId: wf.id, to: 'b', runAt: new Date(Date.now() - 1000).toISOString() });
    expect(created.status).toBe('PENDING');
    // the only worker ticking (every 50 ms) works in another tenant: wait for it to apply one of its
    // own due entries, then check this one is untouched
    const other = await workflowIn(w);
    const ran = await schedule(w, { workflowId: other.id, to: 'b', runAt: new Date().toISOString() });
    expect((await settled(w, ran.id)).status).toBe('DONE');
    expect(await entry(t, created.id)).toEqual(created);
    expect(await workflow(t, wf.id)).toMatchObject({ state: 'a', version: 1 });
  });
});

describe('the worker (on, tickMs 50)', () => {
  const subs: Subscription[] = [];
  afterEach(async () => {
    subs.splice(0).forEach((s) => s.close());
    const channel = w.server.engine.context.keys(w.tenant).workflowChannel();
    await expect.poll(() => subscriberCount(w.redis, channel), { timeout: 5000 }).toBe(0);
  });

  it('applies a transition scheduled ~300 ms ahead within a second of runAt, as a workflowEvents event', async () => {
    const wf = await workflowIn(w);
    const sub = await w.subscribe(WORKFLOW_EVENTS, { workflowId: wf.id });
    subs.push(sub);
    const runAt = new Date(Date.now() + 300);
    const created = await schedule(w, { workflowId: wf.id, to: 'b', runAt: runAt.toISOString(), metadata: { reason: 'timer', n: 1 } });
    expect(created).toMatchObject({ status: 'PENDING', runAt: runAt.toISOString(), executedAt: null });

    const done = await settled(w, created.id, 3000);
    expect(done).toMatchObject({ id: created.id, workflowId: wf.id, to: 'b', status: 'DONE', error: null, runAt: runAt.toISOString() });
    expect(done.executedAt).toMatch(ISO_UTC);
    const lateness = Date.parse(done.executedAt) - runAt.getTime();
    expect(lateness).toBeGreaterThanOrEqual(0);
    expect(lateness).toBeLessThan(1000);

    const moved = await workflow(w, wf.id);
    expect(moved).toMatchObject({ state: 'b', version: 2 });
    expect(moved.history.entries).toEqual([
      { from: null, to: 'a', version: 1, metadata: {} },
      { from: 'a', to: 'b', version: 2, metadata: { reason: 'timer', n: 1 } },
    ]);

    const [event] = (await sub.waitFor(1)).map((e) => e.workflowEvents);
    expect(event).toMatchObject({ workflowId: wf.id, machine: wf.machine, from: 'a', to: 'b', version: 2, metadata: { reason: 'timer', n: 1 } });
    expect(event.at).toBe(moved.updatedAt);
    expect(event.at).toBe(done.executedAt);
    expect(sub.events).toHaveLength(1);

    // applied once: cancelling it now is a conflict, and nothing else happens to the workflow
    await expectGraphQLErrorWithoutWrites(w, CANCEL, { id: created.id }, 'STATE_CONFLICT');
    expect(await workflow(w, wf.id)).toMatchObject({ state: 'b', version: 2 });
  });

  it('an entry whose transition became invalid ends FAILED with INVALID_TRANSITION', async () => {
    const wf = await workflowIn(w);
    const runAt = new Date(Date.now() + 500);
    const created = await schedule(w, { workflowId: wf.id, to: 'b', runAt: runAt.toISOString() });
    // the workflow moves on first: a -> d (terminal), so a -> b is no longer possible
    expect((await ok(w, TRANSITION, { input: { id: wf.id, to: 'd' } })).transitionWorkflow).toEqual({ state: 'd', version: 2 });
    const failed = await settled(w, created.id, 3000);
    expect(failed.status).toBe('FAILED');
    expect(failed.error).toContain('INVALID_TRANSITION');
    expect(failed.executedAt).toMatch(ISO_UTC);
    expect(Date.parse(failed.executedAt)).toBeGreaterThanOrEqual(runAt.getTime());
    expect(await workflow(w, wf.id)).toMatchObject({ state: 'd', version: 2 });
    await expectGraphQLErrorWithoutWrites(w, CANCEL, { id: created.id }, 'STATE_CONFLICT');
  });

  it('a target not allowed when scheduled is applied if the workflow got there first', async () => {
    const wf = await workflowIn(w);
    const created = await schedule(w, { workflowId: wf.id, to: 'c', runAt: new Date(Date.now() + 500).toISOString() });
    await ok(w, TRANSITION, { input: { id: wf.id, to: 'b' } });
    expect((await settled(w, created.id, 3000)).status).toBe('DONE');
    expect(await workflow(w, wf.id)).toMatchObject({ state: 'c', version: 3 });
  });

  it('a cancelled entry is never applied', async () => {
    const wf = await workflowIn(w);
    const cancelledEntry = await schedule(w, { workflowId: wf.id, to: 'd', runAt: new Date(Date.now() + 400).toISOString() });
    expect((await ok(w, CANCEL, { id: cancelledEntry.id })).cancelScheduledTransition.status).toBe('CANCELLED');
    // a later entry of the same workflow runs after the cancelled one would have
    const later = await schedule(w, { workflowId: wf.id, to: 'b', runAt: new Date(Date.now() + 600).toISOString() });
    expect((await settled(w, later.id, 3000)).status).toBe('DONE');
    expect(await entry(w, cancelledEntry.id)).toMatchObject({ status: 'CANCELLED', executedAt: null, error: null });
    expect(await workflow(w, wf.id)).toMatchObject({ state: 'b', version: 2 });
  });
});

describe('scheduledTransitions', () => {
  const LIST = `query($status: ScheduleStatus, $first: Int, $after: String) {
    scheduledTransitions(status: $status, first: $first, after: $after) { items { id status attempts createdAt } nextCursor } }`;

  it('lists entries newest first, by status, page by page', async () => {
    const { id: workflowId } = await workflowIn(t);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = uid('s');
      ids.push(id);
      await ok(t, SCHEDULE, { input: { id, workflowId, to: 'b', runAt: '2031-01-01T00:00:00Z' } });
    }
    await ok(t, CANCEL, { id: ids[0] });
    const cancelled = await ok(t, LIST, { status: 'CANCELLED' });
    expect(cancelled.scheduledTransitions.items.map((e: { id: string }) => e.id)).toContain(ids[0]);
    expect(cancelled.scheduledTransitions.items.every((e: { status: string }) => e.status === 'CANCELLED')).toBe(true);
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page: any = await ok(t, LIST, { status: 'PENDING', first: 1, after });
      expect(page.scheduledTransitions.items).toHaveLength(1);
      expect(page.scheduledTransitions.items[0]).toMatchObject({ status: 'PENDING', attempts: 0, createdAt: expect.stringMatching(ISO_UTC) });
      seen.push(page.scheduledTransitions.items[0].id);
      after = page.scheduledTransitions.nextCursor;
    } while (after !== null);
    expect(seen).toEqual(expect.arrayContaining([ids[1], ids[2]]));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).not.toContain(ids[0]);
    await expectGraphQLErrorWithoutWrites(t, LIST, { status: 'DONE', after: 'bm90LWEtY3Vyc29y' }, 'BAD_USER_INPUT');
  });
});
