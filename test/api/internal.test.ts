/**
 * Internal engine codes never reach clients: a STALE_KEYS that survives the engine's retry (here a
 * damaged history that no longer belongs to its workflow) is INTERNAL_SERVER_ERROR with a generic
 * message, and nothing is written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGraphQLErrorWithoutWrites, startTestServer, type TestServer, uid } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

describe('STALE_KEYS', () => {
  it('is answered as INTERNAL_SERVER_ERROR without its message, writing nothing', async () => {
    const machine = uid('m').replace(/-/g, '_');
    const define = await t.gql(`mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name } }`, {
      input: { name: machine, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] },
    });
    expect(define.errors).toBeUndefined();
    const id = uid('w');
    expect((await t.gql(`mutation($id: ID!, $m: String!) { startWorkflow(input: { id: $id, machine: $m }) { id } }`, { id, m: machine })).errors).toBeUndefined();
    const history = t.server.engine.context.keys(t.tenant).workflowHistory(id);
    await t.redis.lset(history, 0, '{"workflowId":"someone-else","from":null,"to":"a","at":0,"version":1,"metadata":{}}');
    const res = await expectGraphQLErrorWithoutWrites(
      t,
      `mutation($id: ID!) { transitionWorkflow(input: { id: $id, to: "b" }) { state } }`,
      { id },
      'INTERNAL_SERVER_ERROR',
    );
    expect(res.errors![0]!.message).toBe('Internal server error');
    expect(JSON.stringify(res)).not.toContain('STALE_KEYS');
  });
});
