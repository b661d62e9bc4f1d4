/**
 * `npm run screenshots`: the README's pictures (docs/*.png) of the board and the playground, taken in
 * headless Chromium against a server of its own (a private redis-server in a temporary directory)
 * with a little traffic, placed while the board watches.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { readConfig } from '../src/config.js';
import { createServer } from '../src/server.js';
import { ensureWebBuilt } from './ensure-web.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const docs = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'docs');

async function main(): Promise<void> {
  ensureWebBuilt();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-shots-'));
  // never a Redis of the user's: a private one in the temporary directory
  const config = readConfig({ PORT: '0', LOG_LEVEL: 'silent', DATA_DIR: dataDir, LOCAL_REDIS_URL: 'redis://127.0.0.1:1', WORKER_TICK_MS: '100' });
  const server = await createServer({ ...config, playground: true });
  const gql = async (query: string) => {
    const res = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) });
    const body = (await res.json()) as { data?: any; errors?: unknown };
    if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
    return body.data;
  };
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const board = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await board.goto(new URL('/', server.url).href);
    await board.getByTestId('connection').filter({ hasText: 'live' }).waitFor();

    await gql(`mutation {
      restockProduct(productId: "widget", quantity: 20) { stock }
      a: depositFunds(accountId: "alice", amountCents: 20000) { balanceCents }
      b: depositFunds(accountId: "bob", amountCents: 9000) { balanceCents }
    }`);
    await gql(`mutation { defineStateMachine(input: { name: "ticket", initialState: "open", states: ["open", "in_progress", "resolved", "closed"],
      transitions: [{ from: "open", to: ["in_progress", "closed"] }, { from: "in_progress", to: ["open", "resolved"] }, { from: "resolved", to: ["closed", "open"] }] }) { name } }`);
    for (let i = 1; i <= 4; i++) await gql(`mutation { startWorkflow(input: { id: "ticket-${i}", machine: "ticket", metadata: { title: "Ticket ${i}" } }) { id } }`);
    await gql(`mutation { a: transitionWorkflow(input: { id: "ticket-1", to: "in_progress", metadata: { assignee: "kim" } }) { id }
      b: transitionWorkflow(input: { id: "ticket-2", to: "in_progress" }) { id } }`);
    await gql(`mutation { transitionWorkflow(input: { id: "ticket-1", to: "resolved" }) { id } }`);
    const orders = [
      ['order-1', 'alice', 2, 1500],
      ['order-2', 'bob', 1, 2500],
      ['order-3', 'alice', 3, 990],
      ['order-4', 'bob', 1, 4200],
    ] as const;
    for (const [id, user, quantity, price] of orders) {
      await gql(`mutation { processOrder(input: { orderId: "${id}", userId: "${user}", productId: "widget", quantity: ${quantity}, unitPriceCents: ${price} }) { id } }`);
    }
    await gql(`mutation { a: transitionWorkflow(input: { id: "order-1", to: "processing" }) { id } b: transitionWorkflow(input: { id: "order-2", to: "cancelled" }) { id } }`);
    await gql(`mutation { transitionWorkflow(input: { id: "order-1", to: "shipped" }) { id } }`);
    await gql(`mutation { executeSaga(input: { id: "saga-1", steps: [{ op: HSET, key: "warehouse", field: "bolts", value: "100" }] }) { id } }`);
    const scheduled = await gql(`mutation { scheduleTransition(input: { workflowId: "ticket-3", to: "closed", runAt: "${new Date(Date.now() - 1000).toISOString()}" }) { id } }`);

    await board.locator('[data-order-id="order-4"]').waitFor();
    await board.getByTestId('count-ticket-closed').filter({ hasText: '1' }).waitFor();
    await board.locator('.rows tbody tr', { hasText: 'ticket-1' }).first().click();
    await board.getByText('Workflow history').waitFor();
    await board.locator('.history li').nth(2).waitFor();
    await board.locator('input[aria-label="saga id"]').fill('saga-1');
    await board.locator('form.lookup', { has: board.locator('input[aria-label="saga id"]') }).getByRole('button').click();
    await board.locator('input[aria-label="scheduled transition id"]').fill(scheduled.scheduleTransition.id);
    await board.locator('form.lookup', { has: board.locator('input[aria-label="scheduled transition id"]') }).getByRole('button').click();
    await board.getByText('COMPLETED').first().waitFor();
    await board.getByText('DONE').first().waitFor();
    await board.screenshot({ path: path.join(docs, 'board.png'), fullPage: true });

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, deviceScaleFactor: 1 });
    await phone.goto(new URL('/', server.url).href);
    await phone.locator('[data-order-id="order-4"]').waitFor();
    await phone.screenshot({ path: path.join(docs, 'board-phone.png') });

    const playground = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    await runInPlayground(playground, server.url, '{ order(id: "order-1") { state totalCents workflow { history { entries { from to at } } } } }');
    await playground.screenshot({ path: path.join(docs, 'playground.png') });
    process.stdout.write(`screenshots written to ${docs}: board.png, board-phone.png, playground.png\n`);
  } finally {
    await browser.close();
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function runInPlayground(page: Page, url: string, operation: string): Promise<void> {
  await page.goto(url);
  const editor = page.locator('.graphiql-query-editor .monaco-editor').first();
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(operation);
  await page.locator('.graphiql-tabs', { hasText: '<untitled>' }).waitFor();
  await page.locator('.graphiql-execute-button').click();
  await page.locator('.graphiql-response', { hasText: '"history"' }).waitFor();
  await page.locator('button[aria-label^="Prettify"]').click();
  await page.locator('.graphiql-query-editor .view-line').nth(3).waitFor();
}

main().catch((err: unknown) => {
  process.stderr.write(`screenshots: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
