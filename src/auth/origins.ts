/**
 * Browsers: CORS for the origins in CORS_ORIGINS (default none), and the WebSocket handshake's
 * Origin check (those origins plus the server's own). Requests without an Origin header (servers,
 * CLIs) pass; browsers always send one on cross-origin requests and on every WebSocket handshake.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

const ALLOWED_HEADERS = 'authorization, content-type, apollo-require-preflight, x-apollo-operation-name';

/**
 * Sets CORS headers for a listed origin and answers preflights. Returns true when the request has
 * been answered (a preflight) and must not go further.
 */
export function handleCors(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  const listed = typeof origin === 'string' && allowed.includes(origin);
  res.setHeader('vary', 'Origin');
  if (listed) {
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-expose-headers', 'retry-after');
  }
  const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
  if (!preflight) return false;
  if (listed) {
    res.statusCode = 204;
    res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
    res.setHeader('access-control-allow-headers', ALLOWED_HEADERS);
    res.setHeader('access-control-max-age', '600');
  } else {
    res.statusCode = 403;
  }
  res.end();
  return true;
}

/** The WebSocket handshake's Origin: absent, a listed origin, or the server's own. */
export function originAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (allowed.includes(origin)) return true;
  const host = req.headers.host;
  return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`);
}
