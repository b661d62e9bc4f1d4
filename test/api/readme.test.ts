/**
 * The README is the user's manual: every GraphQL block in it runs here, in order, exactly as written,
 * against a fresh server (tenant), and the results the prose promises are checked.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSchema, parse, validate } from 'graphql';
import { printGraphQLSchema } from '../../src/graphql/schema.js';
import { startTestServer, type TestServer } from './harness.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const blocks = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1]!);

/** Blocks the README presents as failing, by a phrase in the block, with the code it promises. */
const EXPECTED_ERRORS: [string, string][] = [
  ['orderId: "order-2"', 'OUT_OF_STOCK'],
  ['orderId: "order-3"', 'INSUFFICIENT_FUNDS'],
  ['to: "delivered"', 'INVALID_TRANSITION'],
];

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

describe('README walkthrough', () => {
  it('has the walkthrough blocks', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(20);
  });

  it('every subscription in it is valid against the schema', async () => {
    const schema = buildSchema(await printGraphQLSchema());
    const subscriptions = blocks.filter((b) => b.trimStart().startsWith('subscription'));
    expect(subscriptions.length).toBeGreaterThanOrEqual(2);
    for (const block of subscriptions) expect(validate(schema, parse(block))).toEqual([]);
  });

  it('runs every query and mutation as written, with the results the prose describes', async () => {
    const results = new Map<string, Record<string, any>>();
    for (const block of blocks.filter((b) => !b.trimStart().startsWith('subscription'))) {
      const res = await t.gql(block);
      const expected = EXPECTED_ERRORS.find(([phrase]) => block.includes(phrase));
      if (expected) {
        expect(res.errors?.[0]?.extensions?.code, block).toBe(expected[1]);
      } else {
        expect(res.errors, block).toBeUndefined();
        results.set(block, res.data!);
      }
    }
    const find = (phrase: string) => [...results.entries()].filter(([block]) => block.includes(phrase)).map(([, data]) => data);

    expect(find('restockProduct')[0]).toEqual({ restockProduct: { id: 'widget', stock: 5 }, depositFunds: { id: 'alice', balanceCents: 10000 } });
    expect(find('processOrder(input: { orderId: "order-1"')[0]!.processOrder).toMatchObject({
      id: 'order-1',
      state: 'pending',
      totalCents: 3000,
      workflow: { version: 1, allowedTransitions: ['processing', 'cancelled'] },
    });
    const afterOrder = find('orders(first: 10)')[0]!;
    expect(afterOrder).toEqual({
      product: { stock: 3 },
      account: { balanceCents: 7000, orders: { items: [{ id: 'order-1', state: 'pending', totalCents: 3000 }], nextCursor: null } },
    });
    expect(find('from: "processing", expectedVersion: 2')[0]).toEqual({ transitionWorkflow: { state: 'shipped', version: 3 } });
    // the return refunded and restocked
    const afterReturn = find('workflow { history')[0]!;
    expect(afterReturn.account).toEqual({ balanceCents: 10000 });
    expect(afterReturn.product).toEqual({ stock: 5 });
    expect(afterReturn.order.workflow.history.entries.map((e: { to: string }) => e.to)).toEqual(['pending', 'processing', 'shipped', 'returned']);
    expect(afterReturn.order.workflow.history.entries[3].metadata).toEqual({ reason: 'damaged' });

    expect(find('defineStateMachine')[0]!.defineStateMachine).toEqual({ name: 'ticket', version: 1, terminalStates: ['closed'] });
    expect(find('to: "in_progress"')[0]!.transitionWorkflow.metadata).toEqual({ title: 'Printer on fire', tags: [], assignee: 'kim' });
    const ticket = find('workflow(id: "ticket-1")')[0]!;
    expect(ticket.workflows.items.map((w: { id: string }) => w.id)).toEqual(['ticket-1']);

    expect(find('id: "saga-1"')[0]!.executeSaga).toEqual({ id: 'saga-1', status: 'COMPLETED', stepsCompleted: 3, failedStep: null, error: null });
    expect(find('id: "saga-2"')[0]!.executeSaga).toMatchObject({ id: 'saga-2', status: 'ROLLED_BACK', stepsCompleted: 2, failedStep: 3 });
    expect(find('dataHash(key: "warehouse")')[0]).toMatchObject({
      dataHash: { fields: { bolts: '60' }, nextCursor: null },
      dataSet: { members: ['acme'], nextCursor: null },
    });

    expect(find('scheduleTransition')[0]!.scheduleTransition).toMatchObject({ status: 'PENDING', runAt: '2030-01-01T09:00:00.000Z' });
  });
});
