/**
 * The web pages as an HTTP client sees them (the browser tests drive them in Chromium): the board at
 * /, the playground at GET /graphql for browsers only outside production (or with
 * GRAPHQL_PLAYGROUND=true), the development token only while the playground is on, only built files.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { readConfig } from '../../src/config.js';
import { createServer, type RunningServer } from '../../src/server.js';
import { TEST_JWT_SECRET, testToken } from './harness.js';

const started: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

async function start(env: Record<string, string>, devToken: string | null = null): Promise<RunningServer> {
  const config = readConfig({ REDIS_URL: inject('redisUrl'), PORT: '0', LOG_LEVEL: 'silent', WORKER_ENABLED: 'false', AUTH_JWT_SECRET: TEST_JWT_SECRET, ...env });
  const server = await createServer(config, { devToken });
  started.push(server);
  return server;
}

const html = { accept: 'text/html,application/xhtml+xml' };

describe('web pages over HTTP', () => {
  it('GRAPHQL_PLAYGROUND defaults to on, except with NODE_ENV=production', () => {
    expect(readConfig({}).playground).toBe(true);
    expect(readConfig({ NODE_ENV: 'development' }).playground).toBe(true);
    const key = { AUTH_JWT_SECRET: TEST_JWT_SECRET }; // production requires one
    expect(readConfig({ NODE_ENV: 'production', ...key }).playground).toBe(false);
    expect(readConfig({ NODE_ENV: 'production', GRAPHQL_PLAYGROUND: 'true', ...key }).playground).toBe(true);
    // GRAPHQL_INTROSPECTION=true in production brings the playground along (its docs need it)
    expect(readConfig({ NODE_ENV: 'production', GRAPHQL_INTROSPECTION: 'true', ...key }).playground).toBe(true);
    expect(readConfig({ GRAPHQL_PLAYGROUND: 'false' }).playground).toBe(false);
    expect(() => readConfig({ GRAPHQL_PLAYGROUND: 'maybe' })).toThrow(/GRAPHQL_PLAYGROUND must be true or false/);
    expect(() => readConfig({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT must be json or pretty/);
    expect(() => readConfig({ LOG_LEVEL: 'loud' })).toThrow(/LOG_LEVEL must be one of/);
  });

  it('outside production: the board at /, the playground for browsers at /graphql, the dev token in /ui-config.json', async () => {
    const server = await start({ NODE_ENV: 'development' }, 'tok-1');
    const origin = new URL(server.url).origin;
    const board = await fetch(origin + '/');
    expect(board.status).toBe(200);
    expect(await board.text()).toContain('<title>atomflow board</title>');
    const playground = await fetch(server.url, { headers: html });
    expect(playground.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const page = await playground.text();
    expect(page).toContain('<title>atomflow playground</title>');
    // every script and style the page loads is one of ours, under /assets/
    const refs = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(1);
    for (const ref of refs) {
      expect(ref).toMatch(/^\/(assets\/|favicon\.svg$)/);
      expect((await fetch(origin + ref)).status).toBe(200);
    }
    expect(await (await fetch(origin + '/ui-config.json')).json()).toEqual({ graphqlPath: '/graphql', playground: true, devToken: 'tok-1' });
    // no file outside the build, however the path is spelled
    expect((await fetch(origin + '/assets/../../package.json')).status).toBe(404);
    expect((await fetch(origin + '/assets/%2e%2e/%2e%2e/package.json')).status).toBe(404);
    expect((await fetch(origin + '/assets/nope.js')).status).toBe(404);
  });

  it('in production: no playground and no token unless GRAPHQL_PLAYGROUND=true; the API still answers', async () => {
    const server = await start({ NODE_ENV: 'production' }, 'tok-2');
    const origin = new URL(server.url).origin;
    const res = await fetch(server.url, { headers: html });
    expect(await res.text()).not.toContain('atomflow playground');
    expect(await (await fetch(origin + '/ui-config.json')).json()).toEqual({ graphqlPath: '/graphql', playground: false, devToken: null });
    const token = await testToken({ tenant: 'default', role: 'admin' });
    const api = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ stateMachines { name } }' }),
    });
    expect(((await api.json()) as { data: unknown }).data).toEqual({ stateMachines: [{ name: 'order' }] });

    const opted = await start({ NODE_ENV: 'production', GRAPHQL_PLAYGROUND: 'true' });
    expect(await (await fetch(opted.url, { headers: html })).text()).toContain('atomflow playground');
  });
});
