/**
 * `npm run bench [-- --quick] [-- --duration=<ms>]`: throughput and latency of atomflow on this machine.
 *
 * Starts a private redis-server on a free port and the atomflow server against it as a separate Node
 * process (`node --import tsx src/main.ts`, as `npm start` runs it; worker off, tenant `default`), then
 * runs each row for a warm-up and a fixed duration (5 s, or 1.5 s with --quick):
 *   engine calls (the typed engine over one ioredis connection, in this process), GraphQL mutations and
 *   a query over HTTP (a node:http client with a keep-alive Agent, so that the rows measure the server
 *   process rather than the client), and subscription delivery latency (graphql-ws).
 * After the rows it checks the orders against Redis (stock consumed and money spent equal what the
 * stored orders add up to, and what the clients were told) and races buyers for a scarce product.
 * Prints the machine and a markdown table on stdout (progress and the server's log go to stderr); exits
 * 1 when a check fails or a row had errors. Stops the server process (SIGTERM) and redis-server at the
 * end, also on error or Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { Redis } from 'ioredis';
import { Engine } from '../src/app/engine.js';
import { EngineError } from '../src/core/errors.js';
import type { ProcessOrderInput } from '../src/orders/orders.engine.js';
import { DEFAULT_TENANT } from '../src/graphql/context.js';
import { tenantKeys } from '../src/redis/keys.js';
import { startPrivateRedis, type PrivateRedis } from '../test/setup/private-redis.js';

// ---------------------------------------------------------------------------------------------------
// Settings

const USAGE = 'usage: npm run bench [-- --quick] [-- --duration=<ms per row>]';
const argv = process.argv.slice(2);
for (const arg of argv) {
  if (arg !== '--quick' && !/^--duration=\d+$/.test(arg)) {
    process.stderr.write(`unknown argument ${arg}\n${USAGE}\n`);
    process.exit(2);
  }
}
const QUICK = argv.includes('--quick');
const DURATION_MS = Number(argv.find((a) => a.startsWith('--duration='))?.split('=')[1] ?? (QUICK ? 1500 : 5000));
const WARMUP_MS = QUICK ? 250 : 1000;
/**
 * Load on a fresh server process before the HTTP rows: its throughput climbs for about 4 s of load (the
 * JIT optimising graphql, Apollo, type-graphql and our code; measured ~600 -> ~2,000 req/s here), far
 * longer than one row's warm-up. --quick keeps it short, so its HTTP rows read somewhat low.
 */
const SERVER_WARMUP_MS = QUICK ? 1000 : 3000;

/** The server process serves tenant `default`; the bench's redis-server is private, so that is its own. */
const TENANT = DEFAULT_TENANT;
/** The server under test verifies tokens with this per-run secret; the rate limit is off for the bench. */
const BENCH_SECRET = randomBytes(32).toString('base64url');
const BENCH_TOKEN = await new SignJWT({ tenant: TENANT, role: 'admin' })
  .setProtectedHeader({ alg: 'HS256' })
  .setSubject('bench')
  .setExpirationTime('12h')
  .sign(new TextEncoder().encode(BENCH_SECRET));
const ENGINE_CONCURRENCY = 64;
const HTTP_CONCURRENCY = 32;
/** Workflows per client in the transition rows: each client moves only its own, so none contend. */
const FLOWS_PER_CLIENT = 4;
const MACHINE = 'pingpong';
const ACCOUNTS = 16;
const PRODUCTS = 8;
const INITIAL_STOCK = 1_000_000_000;
const INITIAL_BALANCE = 1_000_000_000_000;

// ---------------------------------------------------------------------------------------------------
// Measuring

interface RunResult {
  /** One latency (ms) per successful operation. */
  latencies: number[];
  errors: number;
  firstError?: string;
  elapsedMs: number;
}

/**
 * Calls `op` from `concurrency` concurrent clients until `durationMs` has passed (operations in flight
 * then finish and count). An op's latency is its duration, or the number it returns (for operations
 * whose interesting moment is not their end, such as an event's arrival).
 */
type Op = (client: number, n: number) => Promise<number | void>;

async function runFor(durationMs: number, concurrency: number, op: Op): Promise<RunResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + durationMs;
  async function client(c: number): Promise<void> {
    for (let n = 0; performance.now() < deadline; n++) {
      const t0 = performance.now();
      try {
        const reported = await op(c, n);
        latencies.push(typeof reported === 'number' ? reported : performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, c) => client(c)));
  return { latencies, errors, firstError, elapsedMs: performance.now() - start };
}

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

interface Row {
  name: string;
  operations: number;
  concurrency: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  firstError?: string;
}

const rows: Row[] = [];

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A warm-up run (discarded), then the measured run; appends the row. */
async function bench(name: string, concurrency: number, op: Op): Promise<Row> {
  progress(`bench: ${name} (concurrency ${concurrency}, ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms)`);
  const warm = await runFor(WARMUP_MS, concurrency, op);
  const run = await runFor(DURATION_MS, concurrency, op);
  const sorted = run.latencies.sort((a, b) => a - b);
  const row: Row = {
    name,
    operations: sorted.length,
    concurrency,
    opsPerSec: sorted.length / (run.elapsedMs / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    errors: warm.errors + run.errors,
    firstError: warm.firstError ?? run.firstError,
  };
  if (row.errors > 0) progress(`  ${row.errors} errors, first: ${row.firstError}`);
  rows.push(row);
  return row;
}

// ---------------------------------------------------------------------------------------------------
// The server process

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_START_TIMEOUT_MS = 30_000;
const SERVER_STOP_TIMEOUT_MS = 10_000;

interface ServerProcess {
  /** http://127.0.0.1:<port>/graphql, from the server's "GraphQL endpoint: <url>" log line. */
  url: string;
  wsUrl: string;
  child: ChildProcess;
  /** SIGTERM, and SIGKILL when it has not exited after 10 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/**
 * Spawns `node --import tsx src/main.ts` against `redisUrl` on a free loopback port, worker off, and
 * resolves once it logs its endpoint. Its log lines go to stderr, prefixed `server|`.
 */
function startServerProcess(redisUrl: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      WORKER_ENABLED: 'false',
      AUTH_JWT_SECRET: BENCH_SECRET,
      RATE_LIMIT_PER_S: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Last resort if this process ends without cleanup (an uncaught exception): never leave it behind.
  const killOnExit = () => {
    if (running(child)) child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  let started = false;
  let stopping = false;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      if (started && !stopping) progress(`bench: the server process exited unexpectedly (${signal ?? `code ${code}`})`);
      else if (code !== 0 && code !== null) progress(`bench: the server process exited with code ${code}`);
      resolve();
    }),
  );
  const stop = async () => {
    stopping = true;
    if (!running(child)) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      progress(`bench: the server process did not stop within ${SERVER_STOP_TIMEOUT_MS / 1000} s, killing it`);
      child.kill('SIGKILL');
    }, SERVER_STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };

  return new Promise<ServerProcess>((resolve, reject) => {
    let settled = false;
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop().then(() => reject(new Error(message)), reject);
    };
    const timer = setTimeout(() => fail(`the server did not log its endpoint within ${SERVER_START_TIMEOUT_MS / 1000} s`), SERVER_START_TIMEOUT_MS);
    const stderrTail: string[] = [];
    child.once('error', (err) => fail(`could not start the server: ${err.message}`));
    // 'close' (after 'exit', once its stdio has ended) so that the message has the whole stderr
    child.once('close', (code, signal) => fail(`the server exited at start (${signal ?? `code ${code}`}): ${stderrTail.join('\n')}`));
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
      progress(`server| ${line}`);
    });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      // one JSON line per request is logged (and costs what it costs in production), not echoed
      if (!line.includes('"msgType":"request"')) progress(`server| ${line}`);
      const endpoint = /GraphQL endpoint: ([^\s"]+)/.exec(line)?.[1];
      if (!endpoint || settled) return;
      settled = true;
      started = true;
      clearTimeout(timer);
      resolve({ url: endpoint, wsUrl: endpoint.replace(/^http/, 'ws'), child, stop });
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// Clients

interface GraphQLReply<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

type Gql = <T>(query: string, variables: Record<string, unknown>) => Promise<T>;

/**
 * A GraphQL-over-HTTP client on node:http with a keep-alive `agent` (far cheaper per request than
 * fetch): POSTs one operation, throws on a non-200 answer or GraphQL errors.
 */
function httpClient(endpoint: string, agent: http.Agent): Gql {
  const { hostname, port, pathname } = new URL(endpoint);
  return <T>(query: string, variables: Record<string, unknown>) =>
    new Promise<T>((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify({ query, variables }));
      const req = http.request(
        { agent, hostname, port, path: pathname, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': payload.length, authorization: `Bearer ${BENCH_TOKEN}` } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: GraphQLReply<T>;
            try {
              body = JSON.parse(text) as GraphQLReply<T>;
            } catch {
              return reject(new Error(`HTTP ${res.statusCode}: not JSON: ${text.slice(0, 200)}`));
            }
            if (res.statusCode !== 200 || body.errors || !body.data) {
              const e = body.errors?.[0];
              return reject(new Error(`HTTP ${res.statusCode}: ${e ? `${e.extensions?.code ?? ''} ${e.message}` : text.slice(0, 200)}`));
            }
            resolve(body.data);
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
}

const PROCESS_ORDER = `mutation ($input: ProcessOrderInput!) {
  processOrder(input: $input) { id state totalCents }
}`;
const TRANSITION = `mutation ($input: TransitionWorkflowInput!) {
  transitionWorkflow(input: $input) { id state version }
}`;
const WORKFLOW_QUERY = `query ($id: ID!) {
  workflow(id: $id) { id state version updatedAt history(first: 10) { entries { from to version at } nextCursor } }
}`;
const WORKFLOW_EVENTS = `subscription ($id: ID) {
  workflowEvents(workflowId: $id) { workflowId to version }
}`;

// ---------------------------------------------------------------------------------------------------
// Orders: parameters spread over accounts and products, and what the clients were told

const accountId = (i: number) => `acct-${i}`;
const productId = (i: number) => `prod-${i}`;

let orderSeq = 0;
function nextOrder(prefix: string): ProcessOrderInput {
  const n = orderSeq++;
  return {
    orderId: `${prefix}-${n}`,
    userId: accountId(n % ACCOUNTS),
    productId: productId((n * 3 + 1) % PRODUCTS),
    quantity: 1 + (n % 3),
    unitPriceCents: 250 + (n % 5) * 100,
  };
}

/** What successful processOrder answers added up to, per account and product. */
const confirmed = {
  orders: 0,
  perAccount: new Map<string, { orders: number; spent: number }>(),
  perProduct: new Map<string, number>(),
};

function recordConfirmed(o: ProcessOrderInput, totalCents: number): void {
  if (totalCents !== o.quantity * o.unitPriceCents) throw new Error(`order ${o.orderId}: total ${totalCents}`);
  confirmed.orders++;
  const a = confirmed.perAccount.get(o.userId) ?? { orders: 0, spent: 0 };
  a.orders++;
  a.spent += totalCents;
  confirmed.perAccount.set(o.userId, a);
  confirmed.perProduct.set(o.productId, (confirmed.perProduct.get(o.productId) ?? 0) + o.quantity);
}

// ---------------------------------------------------------------------------------------------------
// Transition rows: a cycle a <-> b, a few workflows per client, states tracked here

interface Flow {
  id: string;
  state: 'a' | 'b';
  version: number;
}

async function startFlows(engine: Engine, prefix: string, count: number): Promise<Flow[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const wf = await engine.workflows.start(TENANT, { id: `${prefix}-${i}`, machine: MACHINE });
      return { id: wf.id, state: 'a' as const, version: wf.version };
    }),
  );
}

const other = (s: 'a' | 'b') => (s === 'a' ? 'b' : 'a');

// ---------------------------------------------------------------------------------------------------
// Checks

interface Check {
  ok: boolean;
  text: string;
}

/** Stored orders against stock, balances, the indexes and what the clients were told. */
async function checkOrders(redis: Redis): Promise<Check[]> {
  const k = tenantKeys(TENANT);
  const storedSpent = new Map<string, number>();
  const storedConsumed = new Map<string, number>();
  let stored = 0;
  let listed = 0;
  for (let a = 0; a < ACCOUNTS; a++) {
    const ids = (await redis.zrange(k.accountOrders(accountId(a)), 0, -1)).map((m) => m.slice(14));
    listed += ids.length;
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hmget(k.workflow(id), 'userId', 'productId', 'quantity', 'totalCents');
    for (const [err, fields] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      const [user, product, quantity, total] = fields as (string | null)[];
      if (user !== accountId(a) || !product) continue; // counted as a mismatch below (stored < listed)
      stored++;
      storedSpent.set(user, (storedSpent.get(user) ?? 0) + Number(total));
      storedConsumed.set(product, (storedConsumed.get(product) ?? 0) + Number(quantity));
    }
  }
  const indexed = await redis.zcard(k.indexMachine('order'));

  let stockOk = true;
  let consumedTotal = 0;
  for (let p = 0; p < PRODUCTS; p++) {
    const id = productId(p);
    const consumed = INITIAL_STOCK - Number(await redis.hget(k.productStock(id), 'stock'));
    consumedTotal += consumed;
    if (consumed !== (storedConsumed.get(id) ?? 0) || consumed !== (confirmed.perProduct.get(id) ?? 0)) stockOk = false;
  }
  let moneyOk = true;
  let spentTotal = 0;
  for (let a = 0; a < ACCOUNTS; a++) {
    const id = accountId(a);
    const spent = INITIAL_BALANCE - Number(await redis.hget(k.accountBalance(id), 'balanceCents'));
    spentTotal += spent;
    const told = confirmed.perAccount.get(id) ?? { orders: 0, spent: 0 };
    if (spent !== (storedSpent.get(id) ?? 0) || spent !== told.spent) moneyOk = false;
  }
  const countsOk = stored === listed && listed === indexed && indexed === confirmed.orders;
  return [
    {
      ok: countsOk,
      text: `orders: ${confirmed.orders} confirmed to clients, ${listed} in account lists, ${stored} stored, ${indexed} indexed`,
    },
    { ok: stockOk, text: `stock consumed (${consumedTotal} units over ${PRODUCTS} products) == quantities of the stored orders, per product` },
    { ok: moneyOk, text: `money spent (${spentTotal} cents over ${ACCOUNTS} accounts) == totals of the stored orders, per account` },
  ];
}

/** 64 concurrent buyers, 400 orders, a product with 100 in stock: exactly 100 succeed, stock ends at 0. */
async function checkNoOversell(engine: Engine, redis: Redis): Promise<Check> {
  const product = 'scarce';
  const stock = 100;
  const attempts = 400;
  await engine.orders.restock(TENANT, product, stock);
  await engine.orders.deposit(TENANT, 'buyer', attempts * 1000);
  let next = 0;
  let sold = 0;
  let outOfStock = 0;
  let other = 0;
  await Promise.all(
    Array.from({ length: ENGINE_CONCURRENCY }, async () => {
      while (next < attempts) {
        const n = next++;
        try {
          await engine.orders.processOrder(TENANT, { orderId: `scarce-${n}`, userId: 'buyer', productId: product, quantity: 1, unitPriceCents: 1000 });
          sold++;
        } catch (err) {
          if (err instanceof EngineError && err.code === 'OUT_OF_STOCK') outOfStock++;
          else other++;
        }
      }
    }),
  );
  const k = tenantKeys(TENANT);
  const left = Number(await redis.hget(k.productStock(product), 'stock'));
  const balance = Number(await redis.hget(k.accountBalance('buyer'), 'balanceCents'));
  const listed = await redis.zcard(k.accountOrders('buyer'));
  const ok = sold === stock && outOfStock === attempts - stock && other === 0 && left === 0 && listed === stock && balance === (attempts - stock) * 1000;
  return {
    ok,
    text: `no oversell: ${ENGINE_CONCURRENCY} concurrent buyers, ${attempts} orders for ${stock} units: ${sold} sold, ${outOfStock} OUT_OF_STOCK${other ? `, ${other} other errors` : ''}, stock left ${left}, ${listed} orders listed, balance ${balance}`,
  };
}

// ---------------------------------------------------------------------------------------------------
// Output

function fmt(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
}

function table(): string {
  const header = ['benchmark', 'operations', 'concurrency', 'ops/s', 'p50 ms', 'p99 ms'];
  const body = rows.map((r) => [r.name, fmt(r.operations, 0), String(r.concurrency), fmt(r.opsPerSec, 0), fmt(r.p50, 2), fmt(r.p99, 2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const startedAt = performance.now();
  const resources: { redis?: PrivateRedis; server?: ServerProcess; clients: Redis[]; ws?: Client; agent?: http.Agent } = { clients: [] };
  const cleanup = async () => {
    const steps: (() => unknown)[] = [
      () => resources.ws?.dispose(),
      () => resources.agent?.destroy(),
      () => resources.clients.forEach((c) => c.disconnect()),
      () => resources.server?.stop(),
      () => resources.redis?.stop(),
    ];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        progress(`bench: while stopping: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  };
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    progress(`bench: ${signal}, stopping`);
    cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    progress('bench: starting redis-server and atomflow');
    const privateRedis = await startPrivateRedis();
    resources.redis = privateRedis;
    const server = await startServerProcess(privateRedis.url);
    resources.server = server;
    // One keep-alive connection per HTTP client, opened in the server warm-up and reused by every row.
    const agent = new http.Agent({ keepAlive: true, maxSockets: HTTP_CONCURRENCY });
    resources.agent = agent;
    const gql = httpClient(server.url, agent);
    // The engine rows use a plain connection of their own (ioredis defaults, as in the server: commands
    // are written as they are issued; auto-pipelining answers a batch only when all of it is done and
    // measured slower here, about a third for 64 concurrent FCALLs).
    const redis = new Redis(privateRedis.url, { maxRetriesPerRequest: 1 });
    resources.clients.push(redis);
    const engine = new Engine(redis);
    const redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?';

    // Data: accounts and products for the order rows, the a <-> b machine for the transition rows.
    await Promise.all([
      ...Array.from({ length: ACCOUNTS }, (_, i) => engine.orders.deposit(TENANT, accountId(i), INITIAL_BALANCE)),
      ...Array.from({ length: PRODUCTS }, (_, i) => engine.orders.restock(TENANT, productId(i), INITIAL_STOCK)),
    ]);
    await engine.workflows.defineMachine(TENANT, {
      name: MACHINE,
      initialState: 'a',
      states: ['a', 'b'],
      transitions: [
        { from: 'a', to: ['b'] },
        { from: 'b', to: ['a'] },
      ],
    });
    const engineFlows = await startFlows(engine, 'engine-wf', ENGINE_CONCURRENCY * FLOWS_PER_CLIENT);
    // The server process learns their routes (cached by its engine) on first use, in the server warm-up.
    const httpFlows = await startFlows(engine, 'http-wf', HTTP_CONCURRENCY * FLOWS_PER_CLIENT);
    const [subFlow] = await startFlows(engine, 'sub-wf', 1);

    // 1. processOrder through the typed engine
    await bench('engine processOrder', ENGINE_CONCURRENCY, async () => {
      const o = nextOrder('e');
      const order = await engine.orders.processOrder(TENANT, o);
      if (order.id !== o.orderId || order.state !== 'pending') throw new Error(`unexpected order ${JSON.stringify(order)}`);
      recordConfirmed(o, order.totalCents);
    });

    // 2. transitionWorkflow through the typed engine, compare-and-set on the state
    await bench('engine transitionWorkflow', ENGINE_CONCURRENCY, async (c, n) => {
      const flow = engineFlows[c * FLOWS_PER_CLIENT + (n % FLOWS_PER_CLIENT)]!;
      const to = other(flow.state);
      const wf = await engine.workflows.transition(TENANT, { id: flow.id, from: flow.state, to });
      if (wf.state !== to || wf.version !== flow.version + 1) throw new Error(`unexpected workflow ${wf.id} ${wf.state} v${wf.version}`);
      flow.state = to;
      flow.version = wf.version;
    });

    // The HTTP operations, checking every answer. Each client moves only its own workflows.
    const httpProcessOrder: Op = async () => {
      const o = nextOrder('h');
      const { processOrder: order } = await gql<{ processOrder: { id: string; state: string; totalCents: number } }>(PROCESS_ORDER, { input: o });
      if (order.id !== o.orderId || order.state !== 'pending') throw new Error(`unexpected order ${JSON.stringify(order)}`);
      recordConfirmed(o, order.totalCents);
    };
    const httpTransition: Op = async (c, n) => {
      const flow = httpFlows[c * FLOWS_PER_CLIENT + (n % FLOWS_PER_CLIENT)]!;
      const to = other(flow.state);
      const { transitionWorkflow: wf } = await gql<{ transitionWorkflow: { state: string; version: number } }>(TRANSITION, {
        input: { id: flow.id, from: flow.state, to },
      });
      if (wf.state !== to || wf.version !== flow.version + 1) throw new Error(`unexpected workflow ${flow.id} ${wf.state} v${wf.version}`);
      flow.state = to;
      flow.version = wf.version;
    };
    const httpWorkflowQuery: Op = async (c, n) => {
      const flow = httpFlows[c * FLOWS_PER_CLIENT + (n % FLOWS_PER_CLIENT)]!;
      const { workflow } = await gql<{ workflow: { id: string; version: number; history: { entries: unknown[] } } | null }>(WORKFLOW_QUERY, {
        id: flow.id,
      });
      const expected = Math.min(10, flow.version);
      if (workflow?.id !== flow.id || workflow.version !== flow.version || workflow.history.entries.length !== expected) {
        throw new Error(`unexpected workflow ${JSON.stringify(workflow)}`);
      }
    };

    // Server warm-up: the three operations in turn (not a row; its errors fail the run like a row's)
    progress(`bench: server warm-up (concurrency ${HTTP_CONCURRENCY}, ${SERVER_WARMUP_MS} ms of the three HTTP operations)`);
    const httpOps = [httpProcessOrder, httpTransition, httpWorkflowQuery];
    const serverWarmup = await runFor(SERVER_WARMUP_MS, HTTP_CONCURRENCY, (c, n) => httpOps[n % httpOps.length]!(c, n));
    if (serverWarmup.errors > 0) progress(`  ${serverWarmup.errors} errors, first: ${serverWarmup.firstError}`);

    // 3. processOrder over HTTP
    await bench('GraphQL processOrder (HTTP)', HTTP_CONCURRENCY, httpProcessOrder);

    // 4. transitionWorkflow over HTTP
    await bench('GraphQL transitionWorkflow (HTTP)', HTTP_CONCURRENCY, httpTransition);

    // 5. workflow(id) with the first 10 history entries, over HTTP
    await bench('GraphQL workflow + history(first: 10) (HTTP)', HTTP_CONCURRENCY, httpWorkflowQuery);

    // 6. subscription delivery: from sending a transition to receiving its event over graphql-ws
    const channel = tenantKeys(TENANT).workflowChannel();
    // Redis' count of subscribed connections on the channel: the server's relay subscribes once per
    // channel, so one more means the subscription is live (events published from then on reach it).
    const subscribers = async () => Number(((await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]);
    const before = await subscribers();
    const arrivals = new Map<number, (at: number) => void>();
    let subscriptionError: unknown = null;
    const ws = createClient({
      url: server.wsUrl,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${BENCH_TOKEN}` },
    });
    resources.ws = ws;
    ws.subscribe<{ workflowEvents: { workflowId: string; to: string; version: number } }>(
      { query: WORKFLOW_EVENTS, variables: { id: subFlow!.id } },
      {
        next: (value) => {
          const at = performance.now();
          const event = value.data?.workflowEvents;
          if (!event) subscriptionError ??= value.errors;
          else arrivals.get(event.version)?.(at);
        },
        error: (err) => (subscriptionError ??= err),
        complete: () => {},
      },
    );
    const deadline = Date.now() + 5000;
    while ((await subscribers()) <= before) {
      if (subscriptionError) throw new Error(`subscription failed: ${JSON.stringify(subscriptionError)}`);
      if (Date.now() > deadline) throw new Error('the subscription did not become live within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    await bench('subscription delivery (mutation -> event)', 1, async () => {
      const flow = subFlow!;
      const to = other(flow.state);
      const version = flow.version + 1;
      let timer: NodeJS.Timeout | undefined;
      const arrived = new Promise<number>((resolve, reject) => {
        arrivals.set(version, resolve);
        timer = setTimeout(() => reject(new Error(`no event for version ${version} within 5 s`)), 5000);
      });
      const t0 = performance.now();
      try {
        const { transitionWorkflow: wf } = await gql<{ transitionWorkflow: { state: string; version: number } }>(TRANSITION, {
          input: { id: flow.id, from: flow.state, to },
        });
        if (wf.version !== version) throw new Error(`unexpected version ${wf.version}`);
        flow.state = to;
        flow.version = version;
        return (await arrived) - t0;
      } finally {
        clearTimeout(timer);
        arrivals.delete(version);
      }
    });

    progress('bench: checking orders');
    const checks = [...(await checkOrders(redis)), await checkNoOversell(engine, redis)];
    const failedRows = [...rows, { name: 'server warm-up', errors: serverWarmup.errors, firstError: serverWarmup.firstError }].filter((r) => r.errors > 0);

    const cpus = os.cpus();
    const out: string[] = [];
    out.push(`atomflow benchmark${QUICK ? ' (--quick)' : ''}: ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms per row, ${SERVER_WARMUP_MS} ms server warm-up before the HTTP rows`);
    out.push(`machine: ${cpus.length} CPUs (${cpus[0]?.model.trim() ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`);
    out.push(`node ${process.version}, redis-server ${redisVersion}; server: a separate process (node --import tsx src/main.ts), worker off`);
    out.push('');
    out.push(table());
    out.push('');
    out.push('engine rows: the typed engine (src/engine) over one ioredis connection, default options.');
    out.push(`HTTP rows: POST /graphql to the server process from a node:http client in this process, keep-alive`);
    out.push(`Agent with one connection per concurrent client (maxSockets ${HTTP_CONCURRENCY}). The server runs on one core (one`);
    out.push(`event loop); client, server and redis-server share this machine's ${cpus.length} CPUs.`);
    out.push('subscription row: one graphql-ws client, sequential transitions over HTTP, latency from sending the');
    out.push('mutation to receiving its workflowEvents event.');
    out.push('');
    for (const c of checks) out.push(`${c.ok ? '✓' : '✗'} ${c.text}`);
    for (const r of failedRows) out.push(`✗ ${r.name}: ${r.errors} failed operations, first: ${r.firstError}`);
    process.stdout.write(`${out.join('\n')}\n`);
    return checks.every((c) => c.ok) && failedRows.length === 0 ? 0 : 1;
  } finally {
    progress('bench: stopping');
    await cleanup();
    progress(`bench: done in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
