import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uid } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

describe('smoke', () => {
  it('defines, starts, transitions and streams a workflow', async () => {
    const m = uid('m').replace(/-/g, '_');
    const def = await t.gql(`mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name version terminalStates transitions { from to } } }`, {
      input: { name: m, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] },
    });
    expect(def.errors).toBeUndefined();
    expect(def.data?.defineStateMachine).toEqual({ name: m, version: 1, terminalStates: ['b'], transitions: [{ from: 'a', to: ['b'] }] });
    const sub = await t.subscribe(`subscription($m: String) { workflowEvents(machine: $m) { eventId workflowId from to version at metadata } }`, { m });
    const start = await t.gql(`mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id state version createdAt metadata allowedTransitions } }`, {
      input: { id: 'w1', machine: m, metadata: { x: [] } },
    });
    expect(start.errors).toBeUndefined();
    expect(start.data?.startWorkflow).toMatchObject({ id: 'w1', state: 'a', version: 1, metadata: { x: [] }, allowedTransitions: ['b'] });
    const moved = await t.gql(`mutation { transitionWorkflow(input: {id: "w1", to: "b"}) { state version history { entries { from to version } nextCursor } } }`);
    expect(moved.data?.transitionWorkflow).toEqual({ state: 'b', version: 2, history: { entries: [{ from: null, to: 'a', version: 1 }, { from: 'a', to: 'b', version: 2 }], nextCursor: null } });
    const events = await sub.waitFor(2);
    expect(events.map((e) => e.workflowEvents.to)).toEqual(['a', 'b']);
    expect(events[0].workflowEvents.at).toMatch(/Z$/);
    const bad = await t.gql(`mutation { transitionWorkflow(input: {id: "w1", to: "a"}) { state } }`);
    expect(bad.errors?.[0]?.extensions?.code).toBe('INVALID_TRANSITION');
  });
});
