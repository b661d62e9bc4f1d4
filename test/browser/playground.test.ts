/**
 * The playground in a real browser: GET /graphql from a browser is the bundled GraphiQL, which loads
 * with no console error and nothing fetched from outside the server, runs a query over HTTP and a
 * subscription over graphql-ws that receives the event a mutation causes. Apollo's CDN page is gone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { postGraphQL, uid } from '../api/harness.js';
import type { RunningServer } from '../../src/server.js';
import { launchBrowser, requireBrowserInCi, SKIP_BROWSER, startWebServer, watchPage } from './browser.js';

requireBrowserInCi();


/** Replaces the operation editor's text by typing it, as a user would, and runs it. */
async function run(page: Page, operation: string): Promise<void> {
  const editor = page.locator('.graphiql-query-editor .monaco-editor').first();
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(operation); // as a paste: no auto-closed brackets or completions
  await expect.poll(async () => (await page.locator('.graphiql-query-editor .view-lines').innerText()).replace(/\u00a0/g, ' ')).toBe(operation);
  // GraphiQL takes the editor's text into its state a moment later; the tab's title (the operation
  // name; the default document's is "Machines") shows when it has
  await expect.poll(() => page.locator('.graphiql-tabs').innerText()).toContain('<untitled>');
  await page.locator('.graphiql-execute-button').click();
}

async function responseText(page: Page): Promise<string> {
  return (await page.locator('.graphiql-response').innerText()).replace(/\u00a0/g, ' ');
}

// a browser on a busy 2-CPU machine: more time than the API tests' 20 s
describe.skipIf(SKIP_BROWSER)('playground (Chromium)', { timeout: 60_000 }, () => {
  let browser: Browser;
  let server: RunningServer;
  let origin: string;
  let ordersChannel: string;
  /** The development token the server hands the playground (an admin's of this tenant). */
  let DEV_TOKEN: string;

  beforeAll(async () => {
    browser = await launchBrowser();
    let tenant: string;
    ({ server, origin, tenant, token: DEV_TOKEN } = await startWebServer());
    ordersChannel = server.engine.context.keys(tenant).ordersChannel();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('is served to browsers at GET /graphql, bundled, instead of Apollo’s CDN page', async () => {
    const res = await fetch(server.url, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('atomflow playground');
    expect(html).not.toMatch(/apollo|embeddable-sandbox|cdn\./i);
    // a GraphQL GET request still reaches the API
    const api = await fetch(`${server.url}?query=${encodeURIComponent('{ stateMachines { name } }')}`, {
      headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${DEV_TOKEN}` },
    });
    expect(((await api.json()) as { data: unknown }).data).toEqual({ stateMachines: [{ name: 'order' }] });
  });

  it('loads without console errors, offers the docs and the development token, and runs a query', async () => {
    const page = await browser.newPage();
    const { problems } = watchPage(page, origin);
    const sent: Record<string, string>[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url() === server.url) sent.push(r.headers());
    });
    await page.goto(server.url);
    await page.locator('.graphiql-query-editor .monaco-editor').first().waitFor();

    // the headers editor holds the server's development token
    const headersEditor = page.locator('section.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden) .view-lines');
    await expect.poll(async () => (await headersEditor.innerText()).replace(/\u00a0/g, ' ')).toContain(`"Authorization": "Bearer ${DEV_TOKEN}"`);

    await run(page, '{ stateMachines { name initialState } }');
    await expect.poll(() => responseText(page), { timeout: 10_000 }).toContain('"initialState": "pending"');
    expect(sent.at(-1)?.authorization).toBe(`Bearer ${DEV_TOKEN}`);

    // the docs explorer reads the schema (introspection through the same fetcher)
    await page.locator('button[aria-label="Show Documentation Explorer"]').click();
    await page.locator('.graphiql-doc-explorer').getByText('Mutation', { exact: true }).click({ timeout: 10_000 });
    await page.locator('.graphiql-doc-explorer').getByText('processOrder', { exact: true }).first().waitFor();

    expect(problems).toEqual([]);
    await page.close();
  });

  it('runs a subscription over graphql-ws that receives the event of a mutation', async () => {
    const page = await browser.newPage();
    const { problems } = watchPage(page, origin);
    await page.goto(server.url);
    await page.locator('.graphiql-query-editor .monaco-editor').first().waitFor();
    const listenersBefore = server.listenerCount(ordersChannel);

    await run(page, 'subscription { orderEvents { type orderId state totalCents } }');
    // the subscription is live on the server once its listener is confirmed
    await expect.poll(() => server.listenerCount(ordersChannel), { timeout: 10_000 }).toBe(listenersBefore + 1);

    const orderId = uid('pg-order');
    const placed = await postGraphQL(
      server.url,
      `mutation($id: ID!) {
        restockProduct(productId: "pg-widget", quantity: 1) { stock }
        depositFunds(accountId: "pg-alice", amountCents: 500) { balanceCents }
        processOrder(input: { orderId: $id, userId: "pg-alice", productId: "pg-widget", quantity: 1, unitPriceCents: 500 }) { id }
      }`,
      { id: orderId },
      DEV_TOKEN,
    );
    expect(placed.errors).toBeUndefined();
    await expect.poll(() => responseText(page), { timeout: 10_000 }).toContain(`"orderId": "${orderId}"`);
    const text = await responseText(page);
    expect(text).toContain('"type": "ORDER_CONFIRMED"');
    expect(text).toContain('"totalCents": 500');

    expect(problems).toEqual([]);
    await page.close();
  });
});

