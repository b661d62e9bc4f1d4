/**
 * The bare route of `npm run bench`: a node:http server making the same engine calls as atomflow's
 * GraphQL resolvers, JSON in and JSON out, with nothing else in between. It is what the GraphQL layer
 * is measured against (the same process kind as the atomflow server: `node --import tsx`, one event
 * loop, one ioredis connection with the server's options).
 *
 *   POST /order          body: ProcessOrderInput         -> { id, state, totalCents }
 *   GET  /product?id=    engine.orders.product           -> { id, stock } | null
 *   GET  /workflow?id=   engine.workflows.get + history  -> { id, state, version, updatedAt, history: { entries, nextCursor } }
 *
 * Engine errors answer 400 { code, message }. Env: REDIS_URL (required), TENANT (default `default`).
 * Logs "bare endpoint: http://127.0.0.1:<port>" on stdout once listening; exits on SIGTERM.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Engine } from '../src/app/engine.js';
import { EngineError } from '../src/core/errors.js';
import { DEFAULT_TENANT } from '../src/graphql/context.js';
import type { ProcessOrderInput } from '../src/orders/orders.engine.js';

const redisUrl = process.env.REDIS_URL;
if (!redisUrl) {
  process.stderr.write('bench-bare-server: REDIS_URL is required\n');
  process.exit(2);
}
const tenant = process.env.TENANT ?? DEFAULT_TENANT;
const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
const engine = new Engine(redis);

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(err);
      }
    });
  });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const id = q === -1 ? null : new URLSearchParams(url.slice(q + 1)).get('id');
  if (path === '/order' && req.method === 'POST') {
    const input = (await readJson(req)) as ProcessOrderInput;
    const order = await engine.orders.processOrder(tenant, input);
    return send(res, 200, { id: order.id, state: order.state, totalCents: order.totalCents });
  }
  if (path === '/product' && id !== null) {
    const product = await engine.orders.product(tenant, id);
    return send(res, 200, product && { id: product.id, stock: product.stock });
  }
  if (path === '/workflow' && id !== null) {
    const wf = await engine.workflows.get(tenant, id);
    if (!wf) return send(res, 200, null);
    const page = await engine.workflows.history(tenant, wf.id, { first: 10 });
    return send(res, 200, {
      id: wf.id,
      state: wf.state,
      version: wf.version,
      updatedAt: wf.updatedAt.toISOString(),
      history: {
        entries: page.items.map((e) => ({ from: e.from, to: e.to, version: e.version, at: e.at.toISOString() })),
        nextCursor: page.nextCursor,
      },
    });
  }
  send(res, 404, { code: 'NOT_FOUND', message: 'no such route' });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err: unknown) => {
    if (err instanceof EngineError) send(res, 400, { code: err.code, message: err.message });
    else send(res, 500, { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) });
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`bare endpoint: http://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  redis.disconnect();
  process.exit(0);
});
