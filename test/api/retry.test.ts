/**
 * Retrying mutations over GraphQL: a client that lost the reply sends the same mutation again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGraphQLErrorWithoutWrites, startTestServer, type TestServer, uid } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

const DEPOSIT = `mutation($accountId: ID!, $amountCents: SafeInt!, $requestId: ID) {
  depositFunds(accountId: $accountId, amountCents: $amountCents, requestId: $requestId) { id balanceCents } }`;
const RESTOCK = `mutation($productId: ID!, $quantity: Int!, $requestId: ID) {
  restockProduct(productId: $productId, quantity: $quantity, requestId: $requestId) { id stock } }`;
const SCHEDULE = `mutation($input: ScheduleTransitionInput!) { scheduleTransition(input: $input) { id workflowId to runAt status } }`;
const DEFINE = `mutation($input: DefineStateMachineInput!) { defineStateMachine(input: $input) { name version } }`;

describe('depositFunds and restockProduct with requestId', () => {
  it('apply once however often they are sent', async () => {
    const accountId = uid('acct');
    const requestId = uid('req');
    const first = await t.ok(DEPOSIT, { accountId, amountCents: 1000, requestId });
    expect(first.depositFunds).toEqual({ id: accountId, balanceCents: 1000 });
    expect(await t.ok(DEPOSIT, { accountId, amountCents: 1000, requestId })).toEqual(first);
    expect((await t.ok(`query($id: ID!) { account(id: $id) { balanceCents } }`, { id: accountId })).account.balanceCents).toBe(1000);

    const productId = uid('prod');
    const restock = await t.ok(RESTOCK, { productId, quantity: 3, requestId: uid('req') });
    expect(restock.restockProduct.stock).toBe(3);
  });

  it('answer IDEMPOTENCY_CONFLICT for the same requestId with other arguments, writing nothing', async () => {
    const accountId = uid('acct');
    const requestId = uid('req');
    await t.ok(DEPOSIT, { accountId, amountCents: 1000, requestId });
    await expectGraphQLErrorWithoutWrites(t, DEPOSIT, { accountId, amountCents: 999, requestId }, 'IDEMPOTENCY_CONFLICT');
    await expectGraphQLErrorWithoutWrites(t, RESTOCK, { productId: uid('prod'), quantity: 1, requestId }, 'IDEMPOTENCY_CONFLICT');
    await expectGraphQLErrorWithoutWrites(t, DEPOSIT, { accountId, amountCents: 1, requestId: 'bad:id' }, 'BAD_USER_INPUT');
  });
});

describe('scheduleTransition with an id', () => {
  it('answers the stored entry for the same parameters and IDEMPOTENCY_CONFLICT for others', async () => {
    await t.ok(DEFINE, {
      input: { name: 'retrydoc', initialState: 'a', states: ['a', 'b', 'c'], transitions: [{ from: 'a', to: ['b', 'c'] }] },
    });
    const workflowId = uid('wf');
    await t.ok(`mutation($id: ID!) { startWorkflow(input: { id: $id, machine: "retrydoc" }) { id } }`, { id: workflowId });
    const input = { id: uid('s'), workflowId, to: 'b', runAt: '2031-01-01T00:00:00.000Z', metadata: { x: 1 } };
    const first = await t.ok(SCHEDULE, { input });
    expect(first.scheduleTransition).toMatchObject({ id: input.id, status: 'PENDING' });
    const before = await t.snapshot();
    expect(await t.ok(SCHEDULE, { input })).toEqual(first);
    expect(await t.snapshot()).toEqual(before);
    await expectGraphQLErrorWithoutWrites(t, SCHEDULE, { input: { ...input, to: 'c' } }, 'IDEMPOTENCY_CONFLICT');
  });
});

describe('defineStateMachine with the current definition', () => {
  it('returns the current version', async () => {
    const input = { name: uid('m').replace(/-/g, '_'), initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }] };
    expect((await t.ok(DEFINE, { input })).defineStateMachine.version).toBe(1);
    const before = await t.snapshot();
    expect((await t.ok(DEFINE, { input })).defineStateMachine.version).toBe(1);
    expect(await t.snapshot()).toEqual(before);
  });
});
