/**
 * Browsers: CORS answers preflights and sets headers for the origins in CORS_ORIGINS only, and the
 * WebSocket handshake accepts those origins, the server's own and no Origin at all, refusing any
 * other with 403 (a page on another site cannot use a visitor's browser against the API).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './harness.js';
import { RawSocket } from './ws-raw.js';

const APP = 'https://app.example.com';
const EVIL = 'https://evil.example.net';
let t: TestServer;
let token: string;

beforeAll(async () => {
  t = await startTestServer({ config: { corsOrigins: [APP, 'http://localhost:5173'] } });
  token = await t.token();
});
afterAll(() => t?.close());

function preflight(origin: string) {
  return fetch(t.server.url, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
}

describe('CORS', () => {
  it('answers a preflight from a listed origin, allowing Authorization', async () => {
    const res = await preflight(APP);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(res.headers.get('access-control-allow-methods')).toMatch(/POST/);
    expect(res.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    expect(res.headers.get('vary')).toMatch(/Origin/);
  });

  it('refuses a preflight from another origin, without CORS headers', async () => {
    const res = await preflight(EVIL);
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-headers')).toBeNull();
  });

  it('sets CORS headers on the responses of a listed origin only', async () => {
    for (const [origin, allowed] of [
      [APP, APP],
      [EVIL, null],
    ] as const) {
      const res = await fetch(t.server.url, {
        method: 'POST',
        headers: { origin, 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: '{ stateMachines { name } }' }),
      });
      expect(res.headers.get('access-control-allow-origin')).toBe(allowed);
    }
  });

  it('no CORS_ORIGINS (the default): no origin gets CORS headers', async () => {
    const s = await startTestServer();
    try {
      const res = await fetch(s.server.url, { method: 'OPTIONS', headers: { origin: APP, 'access-control-request-method': 'POST' } });
      expect(res.status).toBe(403);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await s.close();
    }
  });
});

describe('the WebSocket handshake checks Origin', () => {
  const open = (origin?: string) => RawSocket.open(t.server.wsUrl, { authorization: `Bearer ${token}`, origin });

  it('refuses another origin with 403, even with a valid token', async () => {
    const handshake = await open(EVIL);
    expect(handshake.httpStatus).toBe(403);
    expect(handshake.socket).toBeNull();
    // a look-alike of a listed origin is another origin
    expect((await open(`${APP}.evil.example.net`)).httpStatus).toBe(403);
    expect((await open('http://app.example.com')).httpStatus).toBe(403);
  });

  it('accepts a listed origin, the server\'s own origin, and no Origin', async () => {
    const own = new URL(t.server.url).origin;
    for (const origin of [APP, own, undefined]) {
      const handshake = await open(origin);
      expect(handshake.socket, String(origin)).not.toBeNull();
      expect(await handshake.socket!.run('{ stateMachines { name } }')).toEqual({ data: { stateMachines: [{ name: 'order' }] } });
      handshake.socket!.close();
    }
  });
});
