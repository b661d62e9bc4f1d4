/** Account.orders over GraphQL: a new order between two pages neither repeats nor hides an order. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uid } from './harness.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

const PROCESS = `mutation($input: ProcessOrderInput!) { processOrder(input: $input) { id } }`;
const ORDERS = `query($id: ID!, $after: String) { account(id: $id) { orders(first: 2, after: $after) { items { id } nextCursor } } }`;

describe('Account.orders', () => {
  it('page 2 continues after page 1 when an order is placed in between', async () => {
    const userId = uid('acct');
    const productId = uid('prod');
    await t.ok(`mutation { restockProduct(productId: "${productId}", quantity: 10) { stock } depositFunds(accountId: "${userId}", amountCents: 10000) { balanceCents } }`);
    const place = (orderId: string) => t.ok(PROCESS, { input: { orderId, userId, productId, quantity: 1, unitPriceCents: 100 } });
    for (const id of ['o1', 'o2', 'o3', 'o4']) await place(`${userId}-${id}`);
    const page1 = (await t.ok(ORDERS, { id: userId })).account.orders;
    await place(`${userId}-o5`);
    const page2 = (await t.ok(ORDERS, { id: userId, after: page1.nextCursor })).account.orders;
    expect([...page1.items, ...page2.items].map((o: { id: string }) => o.id)).toEqual(['o4', 'o3', 'o2', 'o1'].map((o) => `${userId}-${o}`));
    expect(page2.nextCursor).toBeNull();
  });
});
