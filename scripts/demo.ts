/**
 * npm run demo: a guided tour of the atomflow API against a running server.
 *
 *   npm start                 # in one terminal
 *   npm run demo              # in another (ATOMFLOW_URL; else the server on DATA_DIR's private Redis;
 *                             # else http://127.0.0.1:4000/graphql)
 *
 * It sends ATOMFLOW_TOKEN (an admin or service token); when that is unset, it signs an admin token for
 * tenant `default` with the development secret `npm start` keeps in the data directory (DATA_DIR).
 *
 * It opens the two subscriptions (orderEvents, workflowEvents) over graphql-ws, then walks through
 * the scenarios of the README with plain GraphQL over HTTP (`fetch`), printing each step's essential
 * result and, interleaved, the live events (⚡) the subscriptions receive meanwhile.
 *
 * It is also an end-to-end smoke test: every result it prints is checked, and it exits 1 with a clear
 * message when something is not what it expects (or when the server cannot be reached). Every id
 * carries a per-run suffix, so it can run again and again against the same server.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createClient, type Client } from 'graphql-ws';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { serversOnDataDir } from '../src/redis/private-redis.js';
import { DEV_SECRET_FILE } from '../src/auth/tokens.js';

/**
 * Where the server is: ATOMFLOW_URL; else a server running on the private Redis of DATA_DIR (default
 * ./data), which records its address there; else the default address of npm start.
 */
const HTTP_URL =
  process.env.ATOMFLOW_URL?.trim() || serversOnDataDir(process.env.DATA_DIR?.trim() || './data')[0]?.url || 'http://127.0.0.1:4000/graphql';
const WS_URL = HTTP_URL.replace(/^http/, 'ws'); // http -> ws, https -> wss

/** This run's suffix (base36 milliseconds): every id and machine name below ends with it. */
const RUN = Date.now().toString(36);
const runId = (name: string) => `${name}-${RUN}`;

const PRODUCT = runId('widget');
const USER = runId('alice');
const PING_MACHINE = runId('demo-ping');
const TICKET_MACHINE = runId('ticket');

/** ATOMFLOW_TOKEN, or an admin token signed with the development secret of a local `npm start`. */
async function demoToken(): Promise<string> {
  if (process.env.ATOMFLOW_TOKEN) return process.env.ATOMFLOW_TOKEN;
  const file = path.resolve(process.env.DATA_DIR || './data', DEV_SECRET_FILE);
  if (!existsSync(file)) {
    throw new DemoFailure(`set ATOMFLOW_TOKEN to an admin token (npm start prints one; npm run token makes one): no development secret at ${file}`);
  }
  return new SignJWT({ tenant: 'default', role: 'admin' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('demo')
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(readFileSync(file, 'utf8').trim()));
}
let token = '';

// ---------------------------------------------------------------------------------------------
// A tiny GraphQL client
// ---------------------------------------------------------------------------------------------

/** Something the demo did not expect: it stops and exits 1. */
class DemoFailure extends Error {}

/** A GraphQL error as the client sees it: a stable `extensions.code` and a message for people. */
class GraphQLRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** POSTs one operation and returns its `data`; a GraphQL error becomes a GraphQLRequestError. */
async function gql<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
  let res: Response;
  try {
    res = await fetch(HTTP_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new DemoFailure(`cannot reach ${HTTP_URL} (${why}): is the server running? start it with npm start (or set ATOMFLOW_URL)`);
  }
  let body: { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new DemoFailure(`${HTTP_URL} answered HTTP ${res.status} without a GraphQL response: is ATOMFLOW_URL the GraphQL endpoint?`);
  }
  const error = body.errors?.[0];
  if (error) throw new GraphQLRequestError(error.extensions?.code ?? 'UNKNOWN', error.message);
  return body.data as T;
}

/** Runs an operation the demo expects to fail with `code`, and returns that error. */
async function gqlError(code: string, query: string, variables?: Record<string, unknown>): Promise<GraphQLRequestError> {
  try {
    await gql(query, variables);
  } catch (err) {
    if (err instanceof GraphQLRequestError && err.code === code) return err;
    if (err instanceof GraphQLRequestError) throw new DemoFailure(`expected ${code}, got ${err.code}: ${err.message}`);
    throw err;
  }
  throw new DemoFailure(`expected ${code}, but the operation succeeded`);
}

/** The demo checks everything it prints. */
function check(condition: boolean, what: string): void {
  if (!condition) throw new DemoFailure(`unexpected result: ${what}`);
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const json = (value: unknown) => JSON.stringify(value);
const money = (cents: number) => `${cents} cents ($${(cents / 100).toFixed(2)})`;

function heading(title: string): void {
  console.log(`\n== ${title} ==`);
}
function show(line: string): void {
  console.log(`  ${line}`);
}

// ---------------------------------------------------------------------------------------------
// Live events
// ---------------------------------------------------------------------------------------------

interface OrderEvent { eventId: string; type: string; orderId: string; userId: string; state: string; totalCents: number; at: string }
interface WorkflowEvent { eventId: string; workflowId: string; machine: string; from: string | null; to: string; version: number; at: string; metadata: Record<string, unknown> }

/** Events received so far, as "ORDER_CONFIRMED order-1-…" or "ticket-1-… -> open". */
const received = new Set<string>();
/** Events the steps so far should have caused (checked when each scenario ends). */
const expected: string[] = [];
let subscriptionError: string | null = null;
let onEvent: () => void = () => {};

const expectOrderEvent = (type: string, orderId: string) => expected.push(`${type} ${orderId}`);
const expectWorkflowEvent = (workflowId: string, to: string) => expected.push(`${workflowId} -> ${to}`);

function onOrderEvent(e: OrderEvent): void {
  received.add(`${e.type} ${e.orderId}`);
  console.log(`  ⚡ ${e.type} order ${e.orderId} (${e.state}, ${e.totalCents} cents)`);
}

function onWorkflowEvent(e: WorkflowEvent): void {
  // The subscription is unfiltered: show only this run's workflows. Orders are workflows too, but
  // their events are already shown by orderEvents; the warm-up pings are not worth showing.
  if (!e.workflowId.endsWith(`-${RUN}`)) return;
  received.add(`${e.workflowId} -> ${e.to}`);
  if (e.machine === 'order' || e.machine === PING_MACHINE) return;
  const meta = Object.keys(e.metadata).length ? ` ${json(e.metadata)}` : '';
  console.log(`  ⚡ workflow ${e.workflowId}: ${e.from ?? '(start)'} -> ${e.to} (v${e.version})${meta}`);
}

/** Resolves once every expected event has arrived; throws after `timeoutMs` naming the missing ones. */
async function eventsArrived(timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (subscriptionError) throw new DemoFailure(`subscription failed: ${subscriptionError}`);
    const missing = expected.filter((key) => !received.has(key));
    if (missing.length === 0) return;
    if (Date.now() >= deadline) throw new DemoFailure(`these events never arrived on the subscriptions: ${missing.join(', ')}`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.min(100, deadline - Date.now()));
      onEvent = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/**
 * Opens both subscriptions on one graphql-ws connection and waits until they are live: graphql-ws
 * does not acknowledge a subscription, so start a throwaway workflow and wait for its event
 * (retrying, since the first start may go out before the server has subscribed).
 *
 * Each subscription keeps the last eventId it received in its own `after` variable. graphql-ws
 * sends the same variables object again when it reconnects, so a dropped connection resumes where
 * it left off: no event of the walkthrough is missed or shown twice.
 */
async function openSubscriptions(): Promise<Client> {
  const client = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 5,
    connectionParams: { authorization: `Bearer ${token}` },
  });
  const sink = <T extends { eventId: string }>(field: string, variables: { after: string | null }, handle: (event: T) => void) => ({
    next: (result: { data?: Record<string, unknown> | null; errors?: readonly { message: string }[] }) => {
      if (result.errors?.length) subscriptionError = result.errors.map((e) => e.message).join('; ');
      else if (result.data) {
        const event = result.data[field] as T;
        variables.after = event.eventId;
        handle(event);
      }
      onEvent();
    },
    error: (err: unknown) => {
      subscriptionError = err instanceof Error ? err.message : `the connection to ${WS_URL} closed (${(err as { code?: number }).code ?? json(err)})`;
      onEvent();
    },
    complete: () => {},
  });
  const orderVariables = { userId: USER, after: null as string | null };
  const workflowVariables = { after: null as string | null };
  client.subscribe(
    {
      query: `subscription($userId: ID, $after: String) { orderEvents(userId: $userId, after: $after) { eventId type orderId userId state totalCents at } }`,
      variables: orderVariables,
    },
    sink('orderEvents', orderVariables, onOrderEvent),
  );
  client.subscribe(
    { query: `subscription($after: String) { workflowEvents(after: $after) { eventId workflowId machine from to version at metadata } }`, variables: workflowVariables },
    sink('workflowEvents', workflowVariables, onWorkflowEvent),
  );

  await gql(`mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name } }`, {
    input: { name: PING_MACHINE, initialState: 'ping', states: ['ping', 'pong'], transitions: [{ from: 'ping', to: ['pong'] }] },
  });
  for (let attempt = 1; attempt <= 5; attempt++) {
    const ping = runId(`ping-${attempt}`);
    await gql(`mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id } }`, { input: { id: ping, machine: PING_MACHINE } });
    expected.length = 0;
    expectWorkflowEvent(ping, 'ping');
    try {
      await eventsArrived(1000);
      expected.length = 0;
      return client;
    } catch (err) {
      if (subscriptionError) throw new DemoFailure(`cannot subscribe at ${WS_URL}: ${subscriptionError}`);
      if (!(err instanceof DemoFailure)) throw err;
    }
  }
  throw new DemoFailure(`the subscriptions at ${WS_URL} received no event after 5 tries`);
}

// ---------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------

interface Account { id: string; balanceCents: number }
interface Product { id: string; stock: number }
interface Order { id: string; state: string; totalCents: number }
interface Workflow { id: string; state: string; version: number; allowedTransitions: string[] }

/** Stock and balance, read together in one query. */
async function stockAndBalance(): Promise<{ stock: number; balance: number }> {
  const data = await gql<{ product: Product | null; account: Account | null }>(
    `query($p: ID!, $a: ID!) { product(id: $p) { id stock } account(id: $a) { id balanceCents } }`,
    { p: PRODUCT, a: USER },
  );
  return { stock: data.product?.stock ?? NaN, balance: data.account?.balanceCents ?? NaN };
}

const PROCESS_ORDER = `mutation($input: ProcessOrderInput!) {
  processOrder(input: $input) { id state totalCents createdAt workflow { version allowedTransitions } }
}`;
const TRANSITION = `mutation($input: TransitionWorkflowInput!) {
  transitionWorkflow(input: $input) { id state version allowedTransitions }
}`;

async function stockAndFund(): Promise<void> {
  heading('1. Stock a product and fund an account');
  const data = await gql<{ restockProduct: Product; depositFunds: Account }>(
    `mutation($p: ID!, $a: ID!) {
      restockProduct(productId: $p, quantity: 5) { id stock }
      depositFunds(accountId: $a, amountCents: 10000) { id balanceCents }
    }`,
    { p: PRODUCT, a: USER },
  );
  show(`restockProduct(${PRODUCT}, 5)       -> stock ${data.restockProduct.stock}`);
  show(`depositFunds(${USER}, 10000)     -> balance ${money(data.depositFunds.balanceCents)}`);
  check(data.restockProduct.stock === 5, `stock is ${data.restockProduct.stock}, expected 5`);
  check(data.depositFunds.balanceCents === 10000, `balance is ${data.depositFunds.balanceCents}, expected 10000`);
}

async function orderThatSucceeds(orderId: string): Promise<void> {
  heading('2. An order that succeeds (stock, funds, order and event in one atomic call)');
  const { processOrder: order } = await gql<{ processOrder: Order & { workflow: { version: number; allowedTransitions: string[] } } }>(
    PROCESS_ORDER,
    { input: { orderId, userId: USER, productId: PRODUCT, quantity: 2, unitPriceCents: 1500 } },
  );
  expectOrderEvent('ORDER_CONFIRMED', orderId);
  show(`processOrder(${orderId}: 2 x ${PRODUCT} at 1500 cents) -> ${order.state}, total ${money(order.totalCents)}, next: ${order.workflow.allowedTransitions.join(' | ')}`);
  check(order.state === 'pending' && order.totalCents === 3000, `order is ${json(order)}`);
  const after = await stockAndBalance();
  show(`now: stock ${after.stock}, balance ${money(after.balance)}`);
  check(after.stock === 3 && after.balance === 7000, `expected stock 3 and balance 7000, got ${json(after)}`);
  await eventsArrived();
}

async function ordersThatAreRejected(): Promise<void> {
  heading('3. Orders that are rejected (nothing is written)');
  const before = await stockAndBalance();
  const noStock = runId('order-2');
  const stockError = await gqlError('OUT_OF_STOCK', PROCESS_ORDER, {
    input: { orderId: noStock, userId: USER, productId: PRODUCT, quantity: 50, unitPriceCents: 1500 },
  });
  show(`processOrder(${noStock}: 50 x ${PRODUCT}) -> ${stockError.code}: ${stockError.message}`);
  const noFunds = runId('order-3');
  const fundsError = await gqlError('INSUFFICIENT_FUNDS', PROCESS_ORDER, {
    input: { orderId: noFunds, userId: USER, productId: PRODUCT, quantity: 1, unitPriceCents: 999999 },
  });
  show(`processOrder(${noFunds}: 1 x ${PRODUCT} at 999999 cents) -> ${fundsError.code}: ${fundsError.message}`);

  const after = await stockAndBalance();
  const orders = await gql<{ a: Order | null; b: Order | null }>(`query($a: ID!, $b: ID!) { a: order(id: $a) { id } b: order(id: $b) { id } }`, { a: noStock, b: noFunds });
  show(`still: stock ${after.stock}, balance ${money(after.balance)}; neither order exists`);
  check(same(before, after), `stock or balance changed: ${json(before)} -> ${json(after)}`);
  check(orders.a === null && orders.b === null, `a rejected order exists: ${json(orders)}`);
}

async function orderLifecycle(orderId: string): Promise<void> {
  heading('4. The order lifecycle: processing, shipped, delivered, an invalid move, a return');
  const steps: { to: string; from?: string; expectedVersion?: number; metadata?: Record<string, unknown> }[] = [
    { to: 'processing', metadata: { picker: 'sam' } },
    { to: 'shipped', from: 'processing', expectedVersion: 2 }, // compare-and-set on state and version
    { to: 'delivered' },
  ];
  for (const step of steps) {
    const { transitionWorkflow: wf } = await gql<{ transitionWorkflow: Workflow }>(TRANSITION, { input: { id: orderId, ...step } });
    expectOrderEvent(`ORDER_${step.to.toUpperCase()}`, orderId);
    show(`transitionWorkflow(${orderId} -> ${step.to}) -> ${wf.state} (v${wf.version}), next: ${wf.allowedTransitions.join(' | ') || 'none'}`);
    check(wf.state === step.to, `the order is ${wf.state}, expected ${step.to}`);
  }
  await eventsArrived();

  const invalid = await gqlError('INVALID_TRANSITION', TRANSITION, { input: { id: orderId, to: 'processing' } });
  show(`transitionWorkflow(${orderId} -> processing) -> ${invalid.code}: ${invalid.message}`);

  const before = await stockAndBalance();
  const { transitionWorkflow: returned } = await gql<{ transitionWorkflow: Workflow }>(TRANSITION, {
    input: { id: orderId, to: 'returned', metadata: { reason: 'damaged' } },
  });
  expectOrderEvent('ORDER_RETURNED', orderId);
  const after = await stockAndBalance();
  show(`transitionWorkflow(${orderId} -> returned) -> ${returned.state}: refunded and restocked in the same call`);
  show(`balance ${money(before.balance)} -> ${money(after.balance)}, stock ${before.stock} -> ${after.stock}`);
  check(returned.state === 'returned', `the order is ${returned.state}, expected returned`);
  check(after.balance === before.balance + 3000 && after.stock === before.stock + 2, `the return did not refund 3000 cents and restock 2: ${json(before)} -> ${json(after)}`);
  await eventsArrived();
}

async function customMachine(ticketId: string): Promise<void> {
  heading('5. Your own state machine');
  const { defineStateMachine: machine } = await gql<{ defineStateMachine: { name: string; version: number; terminalStates: string[] } }>(
    `mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name version terminalStates } }`,
    {
      input: {
        name: TICKET_MACHINE,
        initialState: 'open',
        states: ['open', 'in_progress', 'resolved', 'closed'],
        transitions: [
          { from: 'open', to: ['in_progress', 'closed'] },
          { from: 'in_progress', to: ['open', 'resolved'] },
          { from: 'resolved', to: ['closed', 'open'] },
        ],
      },
    },
  );
  show(`defineStateMachine(${machine.name}) -> version ${machine.version}, terminal states: ${machine.terminalStates.join(', ')}`);
  check(machine.version === 1 && same(machine.terminalStates, ['closed']), `machine is ${json(machine)}`);

  const { startWorkflow: started } = await gql<{ startWorkflow: Workflow }>(
    `mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id state version allowedTransitions } }`,
    { input: { id: ticketId, machine: TICKET_MACHINE, metadata: { title: 'Printer on fire' } } },
  );
  expectWorkflowEvent(ticketId, 'open');
  show(`startWorkflow(${ticketId}) -> ${started.state} (v${started.version}), next: ${started.allowedTransitions.join(' | ')}`);
  check(started.state === 'open' && started.version === 1, `workflow is ${json(started)}`);

  const { transitionWorkflow: moved } = await gql<{ transitionWorkflow: Workflow }>(TRANSITION, {
    input: { id: ticketId, to: 'in_progress', metadata: { assignee: 'kim' } },
  });
  expectWorkflowEvent(ticketId, 'in_progress');
  show(`transitionWorkflow(${ticketId} -> in_progress) -> ${moved.state} (v${moved.version})`);
  check(moved.state === 'in_progress' && moved.version === 2, `workflow is ${json(moved)}`);

  const { workflow } = await gql<{
    workflow: { metadata: Record<string, unknown>; history: { entries: { from: string | null; to: string; version: number; metadata: Record<string, unknown> }[] } };
  }>(`query($id: ID!) { workflow(id: $id) { metadata history(first: 10) { entries { from to version metadata } nextCursor } } }`, { id: ticketId });
  show(`metadata ${json(workflow.metadata)}; history:`);
  for (const entry of workflow.history.entries) show(`  v${entry.version}: ${entry.from ?? '(start)'} -> ${entry.to} ${json(entry.metadata)}`);
  check(same(workflow.history.entries.map((e) => e.to), ['open', 'in_progress']), `history is ${json(workflow.history.entries)}`);
  const { title, assignee, ...rest } = workflow.metadata; // metadata merges key by key
  check(title === 'Printer on fire' && assignee === 'kim' && Object.keys(rest).length === 0, `metadata is ${json(workflow.metadata)}`);
  await eventsArrived();
}

async function sagas(): Promise<void> {
  heading('6. Sagas: one that completes, one that rolls back');
  const hashKey = runId('warehouse');
  const setKey = runId('suppliers');
  const readData = async () => {
    const data = await gql<{ dataHash: { fields: Record<string, string> }; dataSet: { members: string[] } }>(
      `query($h: String!, $s: String!) { dataHash(key: $h) { fields } dataSet(key: $s) { members } }`,
      { h: hashKey, s: setKey },
    );
    return { dataHash: data.dataHash.fields, dataSet: data.dataSet.members };
  };
  const runSaga = async (id: string, steps: Record<string, unknown>[]) =>
    (
      await gql<{ executeSaga: { id: string; status: string; stepsCompleted: number; failedStep: number | null; error: string | null } }>(
        `mutation($input: ExecuteSagaInput!) { executeSaga(input: $input) { id status stepsCompleted failedStep error } }`,
        { input: { id, steps } },
      )
    ).executeSaga;

  const completed = await runSaga(runId('saga-1'), [
    { op: 'HSET', key: hashKey, field: 'bolts', value: '100' },
    { op: 'HINCRBY', key: hashKey, field: 'bolts', amount: -40, min: 0 },
    { op: 'SADD', key: setKey, member: 'acme' },
  ]);
  show(`executeSaga(${completed.id}: HSET bolts 100, HINCRBY bolts -40, SADD acme) -> ${completed.status}, ${completed.stepsCompleted} steps`);
  check(completed.status === 'COMPLETED' && completed.stepsCompleted === 3, `saga is ${json(completed)}`);

  const before = await readData();
  show(`before: dataHash ${json(before.dataHash)}, dataSet ${json(before.dataSet)}`);
  check(same(before, { dataHash: { bolts: '60' }, dataSet: ['acme'] }), `data is ${json(before)}`);

  const rolledBack = await runSaga(runId('saga-2'), [
    { op: 'SADD', key: setKey, member: 'globex' },
    { op: 'HDEL', key: hashKey, field: 'bolts' },
    { op: 'HINCRBY', key: hashKey, field: 'nuts', amount: -1, min: 0 },
  ]);
  show(`executeSaga(${rolledBack.id}: SADD globex, HDEL bolts, HINCRBY nuts -1 min 0) -> ${rolledBack.status} at step ${rolledBack.failedStep}: ${rolledBack.error}`);
  check(rolledBack.status === 'ROLLED_BACK' && rolledBack.failedStep === 3, `saga is ${json(rolledBack)}`);

  const after = await readData();
  show(`after:  dataHash ${json(after.dataHash)}, dataSet ${json(after.dataSet)} (exactly as before: steps 1 and 2 were undone)`);
  check(same(after, before), `the rollback did not restore the data: ${json(before)} -> ${json(after)}`);
}

async function scheduledTransition(ticketId: string): Promise<void> {
  heading('7. A scheduled transition, applied by the server\'s worker');
  const runAt = new Date(Date.now() + 1000).toISOString();
  const { scheduleTransition: entry } = await gql<{ scheduleTransition: { id: string; status: string; runAt: string } }>(
    `mutation($input: ScheduleTransitionInput!) { scheduleTransition(input: $input) { id status runAt } }`,
    { input: { workflowId: ticketId, to: 'resolved', runAt, metadata: { by: 'scheduler' } } },
  );
  show(`scheduleTransition(${ticketId} -> resolved at ${entry.runAt}) -> ${entry.id} ${entry.status}`);
  check(entry.status === 'PENDING', `the entry is ${entry.status}, expected PENDING`);

  const deadline = Date.now() + 10_000;
  let current = entry as { status: string; error?: string | null; executedAt?: string | null };
  while (current.status === 'PENDING') {
    if (Date.now() > deadline) {
      throw new DemoFailure(
        `the scheduled transition ${entry.id} was still PENDING 10 s later: is the server's scheduler worker running? ` +
          '(WORKER_ENABLED=false turns it off; then run `npm run worker`; WORKER_TENANTS must include this tenant)',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    current = (
      await gql<{ scheduledTransition: { status: string; error: string | null; executedAt: string | null } | null }>(
        `query($id: ID!) { scheduledTransition(id: $id) { status error executedAt } }`,
        { id: entry.id },
      )
    ).scheduledTransition ?? { status: 'MISSING' };
  }
  if (current.status === 'DONE') expectWorkflowEvent(ticketId, 'resolved');
  show(`scheduledTransition(${entry.id}) -> ${current.status}${current.executedAt ? ` at ${current.executedAt}` : ''}${current.error ? `: ${current.error}` : ''}`);
  check(current.status === 'DONE', `the scheduled transition ended ${current.status}, expected DONE`);

  const { workflow } = await gql<{ workflow: Workflow }>(`query($id: ID!) { workflow(id: $id) { id state version allowedTransitions } }`, { id: ticketId });
  show(`workflow(${ticketId}) -> ${workflow.state} (v${workflow.version})`);
  check(workflow.state === 'resolved', `the workflow is ${workflow.state}, expected resolved`);
  await eventsArrived();
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  token = await demoToken();
  console.log(`atomflow demo against ${HTTP_URL} (run ${RUN})`);
  const { stateMachine: order } = await gql<{ stateMachine: { version: number; states: string[] } | null }>(
    `{ stateMachine(name: "order") { version states } }`,
  );
  check(order !== null, 'the built-in order machine is missing');
  show(`the server answers; built-in order machine v${order!.version}: ${order!.states.join(', ')}`);

  const client = await openSubscriptions();
  show(`subscriptions live at ${WS_URL}: orderEvents(userId: "${USER}") and workflowEvents`);
  try {
    const orderId = runId('order-1');
    const ticketId = runId('ticket-1');
    await stockAndFund();
    await orderThatSucceeds(orderId);
    await ordersThatAreRejected();
    await orderLifecycle(orderId);
    await customMachine(ticketId);
    await sagas();
    await scheduledTransition(ticketId);
    await eventsArrived();
    console.log(`\nDone: every step as expected; ${received.size} live events received.`);
  } finally {
    await client.dispose();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    const message =
      err instanceof DemoFailure ? err.message
      : err instanceof GraphQLRequestError ? `a request failed with ${err.code}: ${err.message}`
      : err instanceof Error ? (err.stack ?? err.message)
      : String(err);
    console.error(`\ndemo failed: ${message}`);
    process.exit(1);
  },
);
