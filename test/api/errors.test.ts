/**
 * Errors as a client sees them over HTTP: every engine error code reaches `extensions.code` with a
 * message a person can act on (free of Redis' own text), invalid input is BAD_USER_INPUT with nothing
 * written, and an unexpected failure is INTERNAL_SERVER_ERROR without a stack trace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGraphQLErrorWithoutWrites, startTestServer, type GraphQLResponse, type TestServer, uid } from './harness.js';

let t: TestServer;
/** Every response of this file, to check at the end that none carries a stack trace. */
const responses: GraphQLResponse[] = [];

beforeAll(async () => {
  t = await startTestServer();
  const gql = t.gql.bind(t);
  t.gql = async <T,>(query: string, variables?: Record<string, unknown>) => {
    const res = await gql<T>(query, variables);
    responses.push(res as GraphQLResponse);
    return res;
  };
});
afterAll(() => t.close());

/** What Redis adds to a raised script error; none of it may reach a client. */
const REDIS_TEXT = /\bERR\b|user_function|@user_script|WRONGTYPE|script:|\.lua/;

const keys = () => t.server.engine.context.keys(t.tenant);
const name = (prefix: string) => `${prefix}_${uid('').slice(1).replace(/-/g, '_')}`;

const DEFINE = `mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name version } }`;
const START = `mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id state version } }`;
const TRANSITION = `mutation($input: TransitionWorkflowInput!) { transitionWorkflow(input: $input) { id state version } }`;
const GET = `query($id: ID!) { workflow(id: $id) { id state } }`;
const LIST = `query($machine: String, $state: String, $first: Int, $after: String) {
  workflows(machine: $machine, state: $state, first: $first, after: $after) { items { id } nextCursor } }`;
const HISTORY = `query($id: ID!, $first: Int, $after: String) { workflow(id: $id) { history(first: $first, after: $after) { entries { to } nextCursor } } }`;
const SCHEDULE = `mutation($input: ScheduleTransitionInput!) { scheduleTransition(input: $input) { id status runAt } }`;

/**
 * Expects `code` with nothing written, a readable message free of Redis text and no stack trace;
 * returns the message of the error with that code.
 */
async function rejects(query: string, variables: Record<string, unknown> | undefined, code: string): Promise<string> {
  const res = await expectGraphQLErrorWithoutWrites(t, query, variables, code);
  for (const error of res.errors!) {
    expect(error.extensions?.code).toBe(code);
    expect(error.message.length).toBeGreaterThan(10);
    expect(error.message).not.toMatch(REDIS_TEXT);
    expect(error.extensions).not.toHaveProperty('stacktrace');
    expect(error.extensions).not.toHaveProperty('exception');
  }
  // a failed mutation or query answers no data for its field
  const data = (res.data ?? {}) as Record<string, unknown>;
  for (const value of Object.values(data)) expect(value).toBeNull();
  return res.errors![0]!.message;
}

/** A machine draft -> review -> published, and a workflow of it in draft. */
async function fixture(metadata?: Record<string, unknown>) {
  const machine = name('m');
  await t.ok(DEFINE, {
    input: {
      name: machine,
      initialState: 'draft',
      states: ['draft', 'review', 'published'],
      transitions: [
        { from: 'draft', to: ['review'] },
        { from: 'review', to: ['published'] },
      ],
    },
  });
  const id = uid('wf');
  await t.ok(START, { input: { id, machine, metadata } });
  return { machine, id };
}

describe('engine error codes over HTTP', () => {
  it('INVALID_TRANSITION names the current and the requested state', async () => {
    const { id } = await fixture();
    const message = await rejects(TRANSITION, { input: { id, to: 'published' } }, 'INVALID_TRANSITION');
    expect(message).toContain('draft');
    expect(message).toContain('published');
    expect(message).toContain(id);
    // a target that is not a state of the machine at all
    expect(await rejects(TRANSITION, { input: { id, to: 'nowhere' } }, 'INVALID_TRANSITION')).toContain('nowhere');
    // the workflow is untouched and still moves where it may
    expect((await t.ok(TRANSITION, { input: { id, to: 'review' } })).transitionWorkflow).toEqual({ id, state: 'review', version: 2 });
    // a terminal state has no way out
    await t.ok(TRANSITION, { input: { id, to: 'published' } });
    const terminal = await rejects(TRANSITION, { input: { id, to: 'draft' } }, 'INVALID_TRANSITION');
    expect(terminal).toContain('published');
    expect(terminal).toContain('draft');
  });

  it('STATE_CONFLICT when the workflow is not in the expected state', async () => {
    const { id } = await fixture();
    const message = await rejects(TRANSITION, { input: { id, to: 'review', from: 'review' } }, 'STATE_CONFLICT');
    expect(message).toContain('draft');
    expect(message).toContain('review');
  });

  it('VERSION_CONFLICT when the workflow is not at the expected version', async () => {
    const { id } = await fixture();
    const message = await rejects(TRANSITION, { input: { id, to: 'review', expectedVersion: 7 } }, 'VERSION_CONFLICT');
    const withoutId = message.replace(id, '');
    expect(withoutId).toMatch(/\b7\b/);
    expect(withoutId).toMatch(/\b1\b/);
    await t.ok(TRANSITION, { input: { id, to: 'review', expectedVersion: 1 } });
    // the version a client read before someone else moved the workflow
    await rejects(TRANSITION, { input: { id, to: 'published', expectedVersion: 1 } }, 'VERSION_CONFLICT');
  });

  it('NOT_FOUND for an unknown workflow, machine or scheduled transition', async () => {
    const ghost = uid('ghost');
    expect(await rejects(TRANSITION, { input: { id: ghost, to: 'review' } }, 'NOT_FOUND')).toContain(ghost);
    const machine = name('noMachine');
    expect(await rejects(START, { input: { machine } }, 'NOT_FOUND')).toContain(machine);
    await rejects(SCHEDULE, { input: { workflowId: ghost, to: 'review', runAt: new Date(Date.now() + 60_000).toISOString() } }, 'NOT_FOUND');
    await rejects(`mutation($id: ID!) { cancelScheduledTransition(id: $id) { id } }`, { id: ghost }, 'NOT_FOUND');
  });

  it('ALREADY_EXISTS when a workflow id is taken', async () => {
    const { id, machine } = await fixture();
    expect(await rejects(START, { input: { id, machine } }, 'ALREADY_EXISTS')).toContain(id);
    // also when the other one is of another machine
    const { machine: other } = await fixture();
    await rejects(START, { input: { id, machine: other, metadata: { x: 1 } } }, 'ALREADY_EXISTS');
  });

  it('BAD_USER_INPUT from the engine names what is wrong', async () => {
    const { id } = await fixture();
    expect(await rejects(TRANSITION, { input: { id: 'a b', to: 'review' } }, 'BAD_USER_INPUT')).toMatch(/\bid\b/);
    expect(await rejects(TRANSITION, { input: { id, to: 'not a state' } }, 'BAD_USER_INPUT')).toMatch(/\bto\b/);
  });
});

describe('bad input writes nothing', () => {
  const badIds: [string, string][] = [
    ['an opening brace', 'a{b'],
    ['a closing brace', 'a}b'],
    ['a hash tag', '{default}'],
    ['a colon', 'a:b'],
    ['a space', 'a b'],
    ['a leading space', ' ab'],
    ['129 characters', 'a'.repeat(129)],
    ['an empty string', ''],
    ['a leading dot', '.ab'],
  ];

  it('accepts an id of exactly 128 characters (the limit the 129-character cases exceed)', async () => {
    const { machine } = await fixture();
    const id = 'b'.repeat(127) + 'c';
    expect((await t.ok(START, { input: { id, machine } })).startWorkflow.id).toBe(id);
  });

  it.each(badIds)('rejects a workflow id with %s', async (_label, bad) => {
    const { id, machine } = await fixture();
    await rejects(START, { input: { id: bad, machine } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id: bad, to: 'review' } }, 'BAD_USER_INPUT');
    await rejects(GET, { id: bad }, 'BAD_USER_INPUT');
    await rejects(SCHEDULE, { input: { workflowId: bad, to: 'review', runAt: new Date(Date.now() + 60_000).toISOString() } }, 'BAD_USER_INPUT');
    // the good workflow next to it is untouched (rejects() compared every key)
    expect((await t.ok(GET, { id })).workflow).toEqual({ id, state: 'draft' });
  });

  const badNames: [string, string][] = [
    ['a leading digit', '1abc'],
    ['a space', 'has space'],
    ['a colon', 'a:b'],
    ['a brace', 'a{b}'],
    ['a dot', 'a.b'],
    ['65 characters', 'a'.repeat(65)],
    ['an empty string', ''],
  ];

  it.each(badNames)('rejects a machine or state name with %s', async (_label, bad) => {
    const { id, machine } = await fixture();
    await rejects(START, { input: { machine: bad } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: bad } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: 'review', from: bad } }, 'BAD_USER_INPUT');
    await rejects(DEFINE, { input: { name: bad, initialState: 'a', states: ['a'], transitions: [] } }, 'BAD_USER_INPUT');
    await rejects(DEFINE, { input: { name: machine, initialState: 'a', states: ['a', bad], transitions: [] } }, 'BAD_USER_INPUT');
    await rejects(DEFINE, { input: { name: machine, initialState: bad, states: ['a', bad], transitions: [] } }, 'BAD_USER_INPUT');
    await rejects(SCHEDULE, { input: { workflowId: id, to: bad, runAt: new Date(Date.now() + 60_000).toISOString() } }, 'BAD_USER_INPUT');
    await rejects(`query($n: ID!) { stateMachine(name: $n) { name } }`, { n: bad }, 'BAD_USER_INPUT');
    if (bad !== '') {
      // an empty filter means no filter; anything else that is not a name is refused
      await rejects(LIST, { machine: bad }, 'BAD_USER_INPUT');
      await rejects(LIST, { state: bad }, 'BAD_USER_INPUT');
    }
  });

  it('rejects metadata above 16 KiB', async () => {
    const { id, machine } = await fixture({ small: 1 });
    const big = { blob: 'x'.repeat(16 * 1024) };
    expect(await rejects(START, { input: { machine, metadata: big } }, 'BAD_USER_INPUT')).toMatch(/metadata/);
    expect(await rejects(TRANSITION, { input: { id, to: 'review', metadata: big } }, 'BAD_USER_INPUT')).toMatch(/metadata/);
    await rejects(SCHEDULE, { input: { workflowId: id, to: 'review', runAt: new Date(Date.now() + 60_000).toISOString(), metadata: big } }, 'BAD_USER_INPUT');
    // multi-byte characters count as bytes: 6000 three-byte characters are 18000 bytes
    await rejects(START, { input: { machine, metadata: { text: '€'.repeat(6000) } } }, 'BAD_USER_INPUT');
    // just below the limit is fine: {"blob":"..."} is 11 bytes around the text
    const fits = { blob: 'y'.repeat(16 * 1024 - 11) };
    expect(Buffer.byteLength(JSON.stringify(fits))).toBe(16 * 1024);
    await t.ok(START, { input: { machine, metadata: fits } });
  });

  it('rejects a transition whose merged metadata would exceed 16 KiB', async () => {
    const { id } = await fixture({ first: 'a'.repeat(9000) });
    expect(await rejects(TRANSITION, { input: { id, to: 'review', metadata: { second: 'b'.repeat(9000) } } }, 'BAD_USER_INPUT')).toMatch(/metadata/);
    // replacing the big key instead keeps it small
    await t.ok(TRANSITION, { input: { id, to: 'review', metadata: { first: 'c'.repeat(9000) } } });
  });

  it.each([
    ['an array', [1, 2]],
    ['an empty array', []],
    ['a string', 'text'],
    ['a JSON text of an object', '{"a":1}'],
    ['a number', 5],
    ['a boolean', true],
  ])('rejects metadata that is %s, passed as a variable', async (_label, metadata) => {
    const { id, machine } = await fixture();
    await rejects(START, { input: { machine, metadata } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: 'review', metadata } }, 'BAD_USER_INPUT');
    await rejects(SCHEDULE, { input: { workflowId: id, to: 'review', runAt: new Date(Date.now() + 60_000).toISOString(), metadata } }, 'BAD_USER_INPUT');
  });

  it.each([
    ['a word', 'tomorrow'],
    ['a date without a time', '2030-01-01'],
    ['a time without a zone', '2030-01-01T10:00:00'],
    ['an impossible day', '2030-02-30T10:00:00Z'],
    ['an impossible hour', '2030-01-01T25:00:00Z'],
    ['a number', 1893456000000],
    ['an empty string', ''],
  ])('rejects a malformed DateTime variable in scheduleTransition: %s', async (_label, runAt) => {
    const { id } = await fixture();
    await rejects(SCHEDULE, { input: { workflowId: id, to: 'review', runAt } }, 'BAD_USER_INPUT');
  });

  it('accepts a well-formed DateTime with an offset and answers it in UTC', async () => {
    const { id } = await fixture();
    const res = await t.ok(SCHEDULE, { input: { workflowId: id, to: 'review', runAt: '2030-01-01T12:00:00+02:00' } });
    expect(res.scheduleTransition).toMatchObject({ status: 'PENDING', runAt: '2030-01-01T10:00:00.000Z' });
  });

  it.each([0, -1, 101, 1000])('rejects first: %i for workflows and history', async (first) => {
    const { id, machine } = await fixture();
    expect(await rejects(LIST, { first }, 'BAD_USER_INPUT')).toMatch(/first/);
    await rejects(LIST, { machine, first }, 'BAD_USER_INPUT');
    expect(await rejects(HISTORY, { id, first }, 'BAD_USER_INPUT')).toMatch(/first/);
    // and as an inline literal
    await rejects(`query { workflows(first: ${first}) { items { id } } }`, undefined, 'BAD_USER_INPUT');
  });

  it('accepts first: 1 and first: 100, the limits', async () => {
    const { id } = await fixture();
    expect((await t.ok(LIST, { first: 1 })).workflows.items).toHaveLength(1);
    await t.ok(LIST, { first: 100 });
    expect((await t.ok(HISTORY, { id, first: 1 })).workflow.history.entries).toHaveLength(1);
  });

  const garbageCursors: [string, string][] = [
    ['punctuation', '!!!'],
    ['spaces', 'not a cursor'],
    ['a JSON text', '{"offset":1}'],
    ['a plain word', 'garbage'],
    ['base64 of a number', Buffer.from('0').toString('base64url')],
    ['very long', 'A'.repeat(600)],
  ];

  it.each(garbageCursors)('rejects a garbage after cursor in workflows (unfiltered): %s', async (_label, after) => {
    await fixture();
    expect(await rejects(LIST, { after }, 'BAD_USER_INPUT')).toMatch(/cursor|after/);
  });

  it.each(garbageCursors)('rejects a garbage after cursor in workflows of a machine: %s', async (_label, after) => {
    const { machine } = await fixture();
    await rejects(LIST, { machine, after }, 'BAD_USER_INPUT');
  });

  it.each(garbageCursors)('rejects a garbage after cursor in workflows of a machine in a state: %s', async (_label, after) => {
    const { machine } = await fixture();
    await rejects(LIST, { machine, state: 'draft', after }, 'BAD_USER_INPUT');
    await rejects(LIST, { state: 'draft', after }, 'BAD_USER_INPUT');
  });

  // base64url('0') is how the history's own cursor for offset 0 looks, so it is not garbage there
  it.each(garbageCursors.filter(([label]) => label !== 'base64 of a number'))('rejects a garbage after cursor in Workflow.history: %s', async (_label, after) => {
    const { id } = await fixture();
    expect(await rejects(HISTORY, { id, after }, 'BAD_USER_INPUT')).toMatch(/cursor|after/);
  });

  it('rejects the cursor of one listing in another', async () => {
    const { machine } = await fixture();
    await t.ok(START, { input: { machine } });
    const page = (await t.ok(LIST, { machine, state: 'draft', first: 1 })).workflows;
    expect(page.nextCursor).toEqual(expect.any(String));
    await rejects(LIST, { machine, state: 'review', after: page.nextCursor }, 'BAD_USER_INPUT');
  });

  it('rejects a machine whose initial state is not one of its states', async () => {
    const m = name('m');
    const message = await rejects(DEFINE, { input: { name: m, initialState: 'nowhere', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] } }, 'BAD_USER_INPUT');
    expect(message).toContain('nowhere');
    expect((await t.ok(`query($n: ID!) { stateMachine(name: $n) { name } }`, { n: m })).stateMachine).toBeNull();
  });

  it.each([
    ['a transition to an unknown state', { initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['c'] }] }],
    ['a transition from an unknown state', { initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'c', to: ['a'] }] }],
    ['no states', { initialState: 'a', states: [], transitions: [] }],
    ['a state listed twice', { initialState: 'a', states: ['a', 'a'], transitions: [] }],
    ['a terminal state with a way out', { initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }], terminalStates: ['a'] }],
    ['an unknown terminal state', { initialState: 'a', states: ['a', 'b'], transitions: [], terminalStates: ['z'] }],
    ['65 states', { initialState: 's0', states: Array.from({ length: 65 }, (_, i) => `s${i}`), transitions: [] }],
  ])('rejects a machine with %s', async (_label, definition) => {
    const m = name('m');
    await rejects(DEFINE, { input: { name: m, ...definition } }, 'BAD_USER_INPUT');
  });

  it('refuses to redefine the built-in order machine, or to start an order directly', async () => {
    const message = await rejects(
      DEFINE,
      { input: { name: 'order', initialState: 'pending', states: ['pending'], transitions: [] } },
      'BAD_USER_INPUT',
    );
    expect(message).toContain('order');
    await rejects(START, { input: { machine: 'order' } }, 'BAD_USER_INPUT');
    const order = (await t.ok(`query { stateMachine(name: "order") { version states } }`)).stateMachine;
    expect(order).toEqual({ version: 1, states: ['pending', 'processing', 'shipped', 'delivered', 'cancelled', 'returned'] });
  });

  it('answers BAD_USER_INPUT for a variable of the wrong type', async () => {
    const { id } = await fixture();
    await rejects(LIST, { first: 'ten' }, 'BAD_USER_INPUT');
    await rejects(LIST, { first: 1.5 }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: 'review', expectedVersion: '1' } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: 'review', expectedVersion: 2 ** 31 } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: ['review'] } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id } }, 'BAD_USER_INPUT');
    await rejects(TRANSITION, { input: { id, to: 'review', unknownField: 1 } }, 'BAD_USER_INPUT');
    await rejects(DEFINE, { input: { name: name('m'), initialState: 'a', states: [1, 2], transitions: [] } }, 'BAD_USER_INPUT');
    await rejects(DEFINE, { input: { name: name('m'), initialState: 'a', states: ['a'], transitions: [{ from: 'a', to: 'a', extra: 1 }] } }, 'BAD_USER_INPUT');
  });

  it('answers GRAPHQL_VALIDATION_FAILED (or BAD_USER_INPUT) for a malformed inline literal', async () => {
    const { id } = await fixture();
    const inline: string[] = [
      `query { workflows(first: "ten") { items { id } } }`,
      `mutation { transitionWorkflow(input: {id: "${id}", to: "review", expectedVersion: "one"}) { id } }`,
      `mutation { transitionWorkflow(input: {id: "${id}", to: "review", metadata: [1, 2]}) { id } }`,
      `mutation { transitionWorkflow(input: {id: "${id}", to: "review", metadata: "text"}) { id } }`,
      `mutation { scheduleTransition(input: {workflowId: "${id}", to: "review", runAt: "tomorrow"}) { id } }`,
      `mutation { transitionWorkflow(input: {id: "${id}"}) { id } }`,
      `query { workflow(id: "${id}") { noSuchField } }`,
    ];
    for (const query of inline) {
      const before = await t.snapshot();
      const res = await t.gql(query);
      expect(res.errors?.length, query).toBeGreaterThan(0);
      for (const error of res.errors!) {
        expect(['GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT'], query).toContain(error.extensions?.code);
        expect(error.message).not.toMatch(REDIS_TEXT);
      }
      expect(res.data ?? null).toBeNull();
      expect(await t.snapshot()).toEqual(before);
    }
    // a literal of the right shape goes through
    const good = await t.gql(`mutation { transitionWorkflow(input: {id: "${id}", to: "review", metadata: {a: [1, {b: null}]}}) { state } }`);
    expect(good.errors).toBeUndefined();
    expect(good.data?.transitionWorkflow).toEqual({ state: 'review' });
  });

  it('answers GRAPHQL_PARSE_FAILED for a document that does not parse', async () => {
    const res = await t.gql(`query { workflows(first: 1 { items { id } } }`);
    expect(res.errors?.[0]?.extensions?.code).toBe('GRAPHQL_PARSE_FAILED');
    // answered in application/json (fetch sends Accept: */*), so 200 as GraphQL over HTTP says;
    // 400 under application/graphql-response+json (test/api/http-spec.test.ts)
    expect(res.status).toBe(200);
  });
});

describe('unexpected failures', () => {
  it('are INTERNAL_SERVER_ERROR with a generic message and no stack trace', async () => {
    // a machine whose stored definition is not JSON: the Lua function raises, and Redis answers
    // with its own text (ERR user_function ... @user_script ...)
    const machine = name('broken');
    await t.redis.hset(keys().machine(machine), 'current', '1', 'v1', 'not json');
    await t.redis.sadd(keys().machineNames(), machine);
    const message = await rejects(START, { input: { machine } }, 'INTERNAL_SERVER_ERROR');
    expect(message).toBe('Internal server error');

    // a workflow key of the wrong type (WRONGTYPE from Redis)
    const id = uid('wrongtype');
    await t.redis.set(keys().workflow(id), 'garbage');
    expect(await rejects(GET, { id }, 'INTERNAL_SERVER_ERROR')).toBe('Internal server error');
    expect(await rejects(TRANSITION, { input: { id, to: 'review' } }, 'INTERNAL_SERVER_ERROR')).toBe('Internal server error');
  });

  it('leave other operations working', async () => {
    const { id } = await fixture();
    expect((await t.ok(TRANSITION, { input: { id, to: 'review' } })).transitionWorkflow.state).toBe('review');
  });
});

describe('every response of this file', () => {
  it('carries no stack trace, exception or Redis text in any error', () => {
    const errors = responses.flatMap((r) => r.errors ?? []);
    expect(errors.length).toBeGreaterThan(100);
    for (const error of errors) {
      expect(error.extensions ?? {}).not.toHaveProperty('stacktrace');
      expect(error.extensions ?? {}).not.toHaveProperty('exception');
      expect(JSON.stringify(error)).not.toMatch(/\bERR\b|user_function|@user_script|WRONGTYPE|\n\s+at /);
      expect(error.extensions?.code).toEqual(expect.any(String));
    }
  });
});
