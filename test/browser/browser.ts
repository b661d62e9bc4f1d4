/**
 * Browser tests drive Debian's `chromium` through playwright-core (no browser download). Where no
 * browser is found the tests are skipped with a loud message, except in CI (CI=true), where a
 * missing browser fails them: `.ci/run` installs chromium with apt when it is missing.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { inject, it } from 'vitest';
import { readConfig } from '../../src/config.js';
import { createServer, type RunningServer } from '../../src/server.js';
import { uniqueTenant } from '../setup/helpers.js';
import { TEST_JWT_SECRET, testToken } from '../api/harness.js';

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
export const CHROMIUM = CANDIDATES.find((p): p is string => !!p && existsSync(p)) ?? null;
export const IN_CI = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';
/** Without a browser the browser suites are skipped; in CI, requireBrowserInCi() adds a failing test. */
export const SKIP_BROWSER = CHROMIUM === null;

/** In CI a missing browser is a failure, counted as a failed test (not a skip). */
export function requireBrowserInCi(): void {
  if (CHROMIUM === null && IN_CI) {
    it('finds Chromium (required in CI: apt-get install -y chromium, or set CHROMIUM_PATH)', () => {
      throw new Error(`no Chromium found at ${CANDIDATES.filter(Boolean).join(', ')}`);
    });
  }
}

if (SKIP_BROWSER && !IN_CI) {
  const line = '!'.repeat(100);
  console.warn(
    `\n${line}\n!!! BROWSER TESTS SKIPPED: no Chromium found (looked at ${CANDIDATES.filter(Boolean).join(', ')}).\n` +
      `!!! Install it (apt-get install -y chromium) or set CHROMIUM_PATH. In CI (CI=true) these tests FAIL instead.\n${line}\n`,
  );
}

export async function launchBrowser(): Promise<Browser> {
  if (!CHROMIUM) throw new Error('no Chromium found: install it with apt-get install -y chromium, or set CHROMIUM_PATH');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** A server on a free port in a tenant of its own, as the harness starts them, with the web pages. */
export async function startWebServer(
  options: { devToken?: string; tenant?: string; port?: number } = {},
): Promise<{ server: RunningServer; tenant: string; origin: string; token: string }> {
  const tenant = options.tenant ?? uniqueTenant('web');
  const config = readConfig({
    REDIS_URL: inject('redisUrl'),
    PORT: String(options.port ?? 0),
    LOG_LEVEL: 'silent',
    WORKER_ENABLED: 'false',
    AUTH_JWT_SECRET: TEST_JWT_SECRET,
    RATE_LIMIT_PER_S: '0',
  });
  // the pages send the development token the server hands them: an admin's of this tenant
  const token = options.devToken ?? (await testToken({ tenant, role: 'admin', ttlSeconds: 3600 }));
  const server = await createServer({ ...config, playground: true }, { devToken: token });
  return { server, tenant, origin: new URL(server.url).origin, token };
}

/** Collects console errors, page errors and any request that leaves the server's origin. */
export function watchPage(page: Page, origin: string): { problems: string[] } {
  const problems: string[] = [];
  const wsOrigin = origin.replace(/^http/, 'ws');
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith(wsOrigin) && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push(`request outside the server: ${url}`);
  });
  page.on('websocket', (ws) => {
    if (!ws.url().startsWith(wsOrigin)) problems.push(`websocket outside the server: ${ws.url()}`);
  });
  return { problems };
}
