/**
 * `npm run bench [-- --quick] [-- --duration=<ms>] [-- --rounds=<n>]`: how much the GraphQL layer and
 * the Redis Functions cost on this machine, measured side by side in one run.
 *
 * Starts a private redis-server on a free port and, against it, two server processes of the same kind
 * (`node --import tsx`, NODE_ENV=production, worker off, tenant `default`):
 *   - atomflow (src/main.ts), the GraphQL endpoint, with AUTH_JWT_SECRET a per-run random secret and
 *     the rate limit off (RATE_LIMIT_PER_S=0); every request and WebSocket connection of the bench
 *     carries an admin token of tenant `default` signed with it;
 *   - the bare route (scripts/bench-bare-server.ts): node:http making the same engine calls, JSON in
 *     and JSON out, nothing else (no authentication: the token it is sent goes unread).
 * Then, at 64 concurrent clients each:
 *   1. processOrder, product(id) and workflow(id) { history(first: 10) } three ways: the engine called
 *      in this process, the bare route, GraphQL; in `--rounds` rounds (5; 1 with --quick) of a warm-up
 *      and `--duration` ms (3000; 1000 with --quick) each, every round measuring the three in turn
 *      (every other round in reverse order). Rows show medians over rounds; a GraphQL/bare ratio is the
 *      median of the rounds' ratios, each from two runs made next to each other under the same load
 *      of this shared machine. Flagged: throughput ratios below 0.90 (target) and 0.80 (milestone),
 *      p99 ratios above 1.5. The server processes' CPU time per operation (/proc) is shown beside.
 *   2. transitionWorkflow (engine and GraphQL) and subscription delivery (graphql-ws).
 *   3. The seed's claim: one product, 64 competing clients on connections of their own, the same order
 *      workload three ways: the Redis Function in one call; client-side WATCH/MULTI (read stock, read
 *      balance, decide, write); the same without WATCH. Throughput, aborts per success, oversold units.
 *   4. Redis cost per call: a library of the bench's own (atomflow_bench, removed at the end) holds a
 *      minimal seed-style process_order, a minimal compare-and-set transition and profiling variants;
 *      each function runs alone between CONFIG RESETSTAT and INFO commandstats, so usec_per_call of
 *      FCALL is that function's (and the commands it ran are listed). Memory per order: MEMORY USAGE of
 *      one order's own keys, and used_memory growth per order (indexes, list, stream included).
 * Afterwards it checks the orders against Redis and races buyers for a scarce product.
 * Prints the command line, the machine and one markdown table on stdout (progress and the servers' logs
 * go to stderr); exits 1 when a check fails or a row had errors (a ratio below target is flagged, not
 * an error). Stops both server processes (SIGTERM) and redis-server at the end, also on error or Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { Engine } from '../src/app/engine.js';
import { EngineError } from '../src/core/errors.js';
import type { ProcessOrderInput } from '../src/orders/orders.engine.js';
import { DEFAULT_TENANT } from '../src/graphql/context.js';
import { tenantKeys } from '../src/redis/keys.js';
import { startPrivateRedis, type PrivateRedis } from '../test/setup/private-redis.js';

// ---------------------------------------------------------------------------------------------------
// Settings

const USAGE = 'usage: npm run bench [-- --quick] [-- --duration=<ms per row>] [-- --rounds=<n>]';
const argv = process.argv.slice(2);
for (const arg of argv) {
  if (arg !== '--quick' && !/^--duration=\d+$/.test(arg) && !/^--rounds=[1-9]$/.test(arg)) {
    process.stderr.write(`unknown argument ${arg}\n${USAGE}\n`);
    process.exit(2);
  }
}
const QUICK = argv.includes('--quick');
const DURATION_MS = Number(argv.find((a) => a.startsWith('--duration='))?.split('=')[1] ?? (QUICK ? 1000 : 3000));
const ROUNDS = Number(argv.find((a) => a.startsWith('--rounds='))?.split('=')[1] ?? (QUICK ? 1 : 5));
const WARMUP_MS = QUICK ? 200 : 1000;
/**
 * Load on a fresh server process before its rows: its throughput climbs for seconds of load (the JIT
 * optimising graphql, Apollo, type-graphql and our code), far longer than one row's warm-up. --quick
 * keeps it short, so its HTTP rows read somewhat low.
 */
const SERVER_WARMUP_MS = QUICK ? 1000 : 4000;
const COMMAND_LINE = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;

/** The server processes serve tenant `default`; the bench's redis-server is private, so that is its own. */
const TENANT = DEFAULT_TENANT;
/** The servers verify tokens with this per-run secret; the rate limit is off for the bench. */
const BENCH_SECRET = randomBytes(32).toString('base64url');
/** An admin token of the bench's tenant: every HTTP request and WebSocket connection carries it. */
const BENCH_TOKEN = await new SignJWT({ tenant: TENANT, role: 'admin' })
  .setProtectedHeader({ alg: 'HS256' })
  .setSubject('bench')
  .setExpirationTime('12h')
  .sign(new TextEncoder().encode(BENCH_SECRET));
const AUTHORIZATION = `Bearer ${BENCH_TOKEN}`;
const CONCURRENCY = 64;
/** Workflows per client in the transition rows: each client moves only its own, so none contend. */
const FLOWS_PER_CLIENT = 4;
const MACHINE = 'pingpong';
const ACCOUNTS = 16;
const PRODUCTS = 8;
const INITIAL_STOCK = 1_000_000_000;
const INITIAL_BALANCE = 1_000_000_000_000;
/** Workflows read by the workflow rows, each moved this many times first (so a page of 10 is full). */
const READ_FLOWS = 64;
const READ_FLOW_TRANSITIONS = 10;
/** GraphQL/bare throughput: target and milestone (issue 9); p99 ratio at most this. */
const RATIO_TARGET = 0.9;
const RATIO_MILESTONE = 0.8;
const P99_RATIO_LIMIT = 1.5;
/** The race: units of the one product, and a time cap per way. */
const RACE_STOCK = QUICK ? 200 : 1000;
const RACE_CAP_MS = QUICK ? 5000 : 20000;
/** Redis cost: calls per function, and the target ratio against the minimal function. */
const COST_CALLS = QUICK ? 1000 : 5000;
const COST_BATCHES = 5;
/** bench_order_shape runs: [indexes written (of 4), events appended to the stream (of 2)]. */
const ORDER_SHAPES: [number, number][] = [
  [4, 2],
  [2, 1],
  [0, 1],
];
const COST_TARGET = 2;

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

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One measured run: throughput and latency. */
interface Measure {
  operations: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  firstError?: string;
  /** CPU time (user + system, all threads) the server process spent per operation, in µs. */
  cpuUsPerOp?: number;
}

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

const CLOCK_TICKS_PER_SEC = 100;

/**
 * CPU time of process `pid` so far, in µs (utime + stime of /proc/<pid>/stat, all its threads); null
 * where /proc is not there. Unlike throughput, CPU per request hardly depends on what else runs on
 * this shared machine.
 */
async function cpuTimeUs(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return ((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC) * 1e6;
  } catch {
    return null;
  }
}

/** A warm-up run (discarded), then the measured run; `pid`: the server process whose CPU time to count. */
async function measure(name: string, concurrency: number, op: Op, pid?: number): Promise<Measure> {
  progress(`bench: ${name} (concurrency ${concurrency}, ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms)`);
  const warm = await runFor(WARMUP_MS, concurrency, op);
  const cpuBefore = await cpuTimeUs(pid);
  const run = await runFor(DURATION_MS, concurrency, op);
  const cpuAfter = await cpuTimeUs(pid);
  const sorted = run.latencies.sort((a, b) => a - b);
  const m: Measure = {
    operations: sorted.length,
    opsPerSec: sorted.length / (run.elapsedMs / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    errors: warm.errors + run.errors,
    firstError: warm.firstError ?? run.firstError,
    cpuUsPerOp: cpuBefore !== null && cpuAfter !== null && sorted.length > 0 ? (cpuAfter - cpuBefore) / sorted.length : undefined,
  };
  if (m.errors > 0) progress(`  ${m.errors} errors, first: ${m.firstError}`);
  else progress(`  ${Math.round(m.opsPerSec)} ops/s, p99 ${m.p99.toFixed(1)} ms${m.cpuUsPerOp ? `, server CPU ${m.cpuUsPerOp.toFixed(0)} µs/op` : ''}`);
  return m;
}

/** The medians over rounds (throughput, p50 and p99 each), errors summed. */
function medianOf(runs: Measure[]): Measure {
  return {
    operations: runs.reduce((s, r) => s + r.operations, 0),
    opsPerSec: median(runs.map((r) => r.opsPerSec)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    firstError: runs.find((r) => r.firstError)?.firstError,
    cpuUsPerOp: runs.every((r) => r.cpuUsPerOp !== undefined) ? median(runs.map((r) => r.cpuUsPerOp!)) : undefined,
  };
}

/** A line of the one table. */
interface TableRow {
  name: string;
  m?: Measure;
  /** What the row shows beyond throughput and latency (a ratio, aborts, a cost). */
  result?: string;
  /** The target and whether it is met: '✓ ...', '✗ ...' or ''. */
  target?: string;
}

const rows: TableRow[] = [];
/** Rows whose operations failed (the run exits 1). */
const failed: { name: string; errors: number; firstError?: string }[] = [];

function addRow(row: TableRow): void {
  rows.push(row);
  if (row.m && row.m.errors > 0) failed.push({ name: row.name, errors: row.m.errors, firstError: row.m.firstError });
}

// ---------------------------------------------------------------------------------------------------
// The server processes

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_START_TIMEOUT_MS = 30_000;
const SERVER_STOP_TIMEOUT_MS = 10_000;

interface ServerProcess {
  /** The endpoint the process logged. */
  url: string;
  child: ChildProcess;
  /** SIGTERM, and SIGKILL when it has not exited after 10 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/**
 * Spawns `node --import tsx <script>` against `redisUrl` on a free loopback port, NODE_ENV=production,
 * worker off, and resolves once it logs a line matching `endpoint` (its first group is the URL). Its
 * log lines go to stderr, prefixed `<label>|`.
 */
function startServerProcess(label: string, script: string, redisUrl: string, endpoint: RegExp): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
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
      if (started && !stopping) progress(`bench: ${label} exited unexpectedly (${signal ?? `code ${code}`})`);
      else if (code !== 0 && code !== null) progress(`bench: ${label} exited with code ${code}`);
      resolve();
    }),
  );
  const stop = async () => {
    stopping = true;
    if (!running(child)) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      progress(`bench: ${label} did not stop within ${SERVER_STOP_TIMEOUT_MS / 1000} s, killing it`);
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
    const timer = setTimeout(() => fail(`${label} did not log its endpoint within ${SERVER_START_TIMEOUT_MS / 1000} s`), SERVER_START_TIMEOUT_MS);
    const stderrTail: string[] = [];
    child.once('error', (err) => fail(`could not start ${label}: ${err.message}`));
    // 'close' (after 'exit', once its stdio has ended) so that the message has the whole stderr
    child.once('close', (code, signal) => fail(`${label} exited at start (${signal ?? `code ${code}`}): ${stderrTail.join('\n')}`));
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
      progress(`${label}| ${line}`);
    });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      // atomflow logs one JSON line per request (and it costs what it costs in production): not echoed
      if (!line.includes('"msgType":"request"')) progress(`${label}| ${line}`);
      const url = endpoint.exec(line)?.[1];
      if (!url || settled) return;
      settled = true;
      started = true;
      clearTimeout(timer);
      resolve({ url, child, stop });
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// Clients

interface GraphQLReply<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/**
 * One HTTP request on a keep-alive `agent` (node:http: far cheaper per request than fetch), with the
 * bench's token (the bare route ignores it: it does no authentication).
 */
function request(agent: http.Agent, url: URL, method: 'GET' | 'POST', body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: http.OutgoingHttpHeaders = payload
      ? { 'content-type': 'application/json', 'content-length': payload.length, authorization: AUTHORIZATION }
      : { authorization: AUTHORIZATION };
    const req = http.request({ agent, hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function parse<T>(status: number, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`HTTP ${status}: not JSON: ${text.slice(0, 200)}`);
  }
}

type Gql = <T>(query: string, variables: Record<string, unknown>) => Promise<T>;

/** GraphQL over HTTP: POSTs one operation, throws on a non-200 answer or GraphQL errors. */
function graphqlClient(endpoint: string, agent: http.Agent): Gql {
  const url = new URL(endpoint);
  return async <T>(query: string, variables: Record<string, unknown>) => {
    const { status, text } = await request(agent, url, 'POST', { query, variables });
    const body = parse<GraphQLReply<T>>(status, text);
    if (status !== 200 || body.errors || !body.data) {
      const e = body.errors?.[0];
      throw new Error(`HTTP ${status}: ${e ? `${e.extensions?.code ?? ''} ${e.message}` : text.slice(0, 200)}`);
    }
    return body.data;
  };
}

/** The bare route: GET or POST JSON, throws on a non-200 answer. */
function bareClient(endpoint: string, agent: http.Agent) {
  return async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
    const { status, text } = await request(agent, new URL(path, endpoint), method, body);
    if (status !== 200) throw new Error(`HTTP ${status}: ${text.slice(0, 200)}`);
    return parse<T>(status, text);
  };
}

const PROCESS_ORDER = `mutation ($input: ProcessOrderInput!) {
  processOrder(input: $input) { id state totalCents }
}`;
const PRODUCT_QUERY = `query ($id: ID!) {
  product(id: $id) { id stock }
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

async function startFlows(engine: Engine, prefix: string, count: number, tenant = TENANT): Promise<Flow[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const wf = await engine.workflows.start(tenant, { id: `${prefix}-${i}`, machine: MACHINE });
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
    // members of the account's order index: '<inverted sequence (13 digits)>:<orderId>'
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
    Array.from({ length: CONCURRENCY }, async () => {
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
    text: `no oversell: ${CONCURRENCY} concurrent buyers, ${attempts} orders for ${stock} units: ${sold} sold, ${outOfStock} OUT_OF_STOCK${other ? `, ${other} other errors` : ''}, stock left ${left}, ${listed} orders listed, balance ${balance}`,
  };
}

// ---------------------------------------------------------------------------------------------------
// The seed's claim: one product, 64 competing clients, three ways

interface RaceResult {
  way: string;
  sold: number;
  units: number;
  aborts: number;
  elapsedMs: number;
  oversold: number;
  errors: number;
  firstError?: string;
}

const RACE_PRICE = 100;
const raceUser = (c: number) => `racer-${c}`;

/**
 * Every client places 1-unit orders on its own connection until it sees the product sold out (or the
 * time cap passes). `attempt` places one order: 'sold', 'soldOut', or 'aborted' (tried again);
 * `stockLeft` reads the stock afterwards.
 */
async function race(
  way: string,
  conns: Redis[],
  stockLeft: () => Promise<number>,
  attempt: (conn: Redis, c: number, orderId: string) => Promise<'sold' | 'soldOut' | 'aborted'>,
): Promise<RaceResult> {
  progress(`bench: race, ${way} (${conns.length} clients, ${RACE_STOCK} units)`);
  let sold = 0;
  let aborts = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + RACE_CAP_MS;
  await Promise.all(
    conns.map(async (conn, c) => {
      for (let n = 0; performance.now() < deadline; ) {
        try {
          const outcome = await attempt(conn, c, `race-${c}-${n}`);
          if (outcome === 'soldOut') return;
          if (outcome === 'aborted') aborts++;
          else {
            sold++;
            n++;
          }
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
          n++;
        }
      }
    }),
  );
  const elapsedMs = performance.now() - start;
  const left = await stockLeft();
  return { way, sold, units: sold, aborts, elapsedMs, oversold: Math.max(0, sold - RACE_STOCK), errors, firstError: firstError ?? (left < 0 && sold <= RACE_STOCK ? `stock ${left}` : undefined) };
}

async function raceThreeWays(url: string): Promise<RaceResult[]> {
  const conns = await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      const c = new Redis(url, { maxRetriesPerRequest: 1 });
      await c.ping();
      return c;
    }),
  );
  try {
    const results: RaceResult[] = [];

    // 1. the Redis Function (order_process) in one call, through the engine, each client on its own connection
    {
      const tenant = 'bench-race-fn';
      const engines = conns.map((c) => new Engine(c));
      await engines[0]!.orders.restock(tenant, 'hot', RACE_STOCK);
      await Promise.all(conns.map((_, c) => engines[0]!.orders.deposit(tenant, raceUser(c), RACE_STOCK * RACE_PRICE * 10)));
      const stockKey = tenantKeys(tenant).productStock('hot');
      const stockLeft = async () => Number(await conns[0]!.hget(stockKey, 'stock'));
      results.push(
        await race('Redis Function, one FCALL', conns, stockLeft, async (_conn, c, orderId) => {
          try {
            await engines[c]!.orders.processOrder(tenant, { orderId, userId: raceUser(c), productId: 'hot', quantity: 1, unitPriceCents: RACE_PRICE });
            return 'sold';
          } catch (err) {
            if (err instanceof EngineError && err.code === 'OUT_OF_STOCK') return 'soldOut';
            throw err;
          }
        }),
      );
    }

    // 2 and 3. client-side: read stock, read balance, decide, write (stock, balance, the order, the
    // account's list, a notification), with WATCH (EXEC aborts when either key changed) and without.
    for (const watch of [true, false]) {
      const k = tenantKeys(watch ? 'bench-race-watch' : 'bench-race-nowatch');
      const stockKey = k.productStock('hot');
      await conns[0]!.set(stockKey, RACE_STOCK);
      await Promise.all(conns.map((_, c) => conns[0]!.set(k.accountBalance(raceUser(c)), RACE_STOCK * RACE_PRICE * 10)));
      results.push(
        await race(watch ? 'client-side WATCH/MULTI' : 'client-side, no WATCH', conns, async () => Number(await conns[0]!.get(stockKey)), async (conn, c, orderId) => {
          const balanceKey = k.accountBalance(raceUser(c));
          if (watch) await conn.watch(stockKey, balanceKey);
          const stock = Number(await conn.get(stockKey));
          const balance = Number(await conn.get(balanceKey));
          if (stock < 1) {
            if (watch) await conn.unwatch();
            return 'soldOut';
          }
          if (balance < RACE_PRICE) {
            if (watch) await conn.unwatch();
            throw new Error(`balance ${balance}`);
          }
          const reply = await conn
            .multi()
            .decrby(stockKey, 1)
            .decrby(balanceKey, RACE_PRICE)
            .hset(k.workflow(orderId), 'id', orderId, 'userId', raceUser(c), 'productId', 'hot', 'quantity', 1, 'totalCents', RACE_PRICE, 'state', 'pending')
            .lpush(k.accountOrders(raceUser(c)), orderId)
            .publish(k.ordersChannel(), orderId)
            .exec();
          return reply === null ? 'aborted' : 'sold';
        }),
      );
    }
    return results;
  } finally {
    conns.forEach((c) => c.disconnect());
  }
}

// ---------------------------------------------------------------------------------------------------
// Redis cost per call: the bench's own library beside the real ones

const BENCH_LIBRARY = 'atomflow_bench';
/**
 * Minimal seed-style functions, and variants that each do one part of order_process, to see where its
 * time goes. Loaded by the bench only (FUNCTION LOAD REPLACE), deleted at the end.
 */
const BENCH_LIBRARY_CODE = `#!lua name=${BENCH_LIBRARY}
-- bench_process_order: the seed's order. KEYS[1] stock, KEYS[2] balance, KEYS[3] order hash,
-- KEYS[4] the account's order list. ARGV[1] orders channel, ARGV[2] order id, ARGV[3] user id,
-- ARGV[4] product id, ARGV[5] quantity, ARGV[6] unit price. Reply: the order's total.
redis.register_function('bench_process_order', function(keys, args)
  local quantity, price = tonumber(args[5]), tonumber(args[6])
  local total = quantity * price
  if tonumber(redis.call('GET', keys[1]) or '0') < quantity then return redis.error_reply('OUT_OF_STOCK') end
  if tonumber(redis.call('GET', keys[2]) or '0') < total then return redis.error_reply('INSUFFICIENT_FUNDS') end
  redis.call('DECRBY', keys[1], quantity)
  redis.call('DECRBY', keys[2], total)
  redis.call('HSET', keys[3], 'userId', args[3], 'productId', args[4], 'quantity', quantity, 'totalCents', total, 'state', 'pending')
  redis.call('LPUSH', keys[4], args[2])
  redis.call('PUBLISH', args[1], args[2])
  return total
end)
-- bench_cas_transition: KEYS[1] workflow hash. ARGV[1] expected state, ARGV[2] new state.
-- Reply: the new version.
redis.register_function('bench_cas_transition', function(keys, args)
  if redis.call('HGET', keys[1], 'state') ~= args[1] then return redis.error_reply('STATE_CONFLICT') end
  redis.call('HSET', keys[1], 'state', args[2])
  return redis.call('HINCRBY', keys[1], 'version', 1)
end)
-- Profiling variants (read-only): the FCALL floor; decoding the order machine as load_machine does
-- (KEYS[1] the machine hash); that plus encoding a workflow reply as order_process does.
redis.register_function{function_name = 'bench_noop', callback = function() return 1 end, flags = {'no-writes'}}
redis.register_function{function_name = 'bench_machine_decode', flags = {'no-writes'}, callback = function(keys)
  local v = redis.call('HGET', keys[1], 'current')
  local definition = cjson.decode(redis.call('HGET', keys[1], 'v' .. v))
  return #definition.states
end}
redis.register_function{function_name = 'bench_reply_encode', flags = {'no-writes'}, callback = function(keys)
  local v = redis.call('HGET', keys[1], 'current')
  local definition = cjson.decode(redis.call('HGET', keys[1], 'v' .. v))
  local allowed = {}
  for _, rule in ipairs(definition.transitions) do if rule.from == definition.initialState then allowed = rule.to end end
  return cjson.encode({
    id = 'o-1', machine = 'order', machineVersion = 1, state = 'pending', version = 1,
    createdAt = 1764400000000, updatedAt = 1764400000000, kind = 'order', metadata = {},
    allowedTransitions = allowed,
    order = { userId = 'acct-1', productId = 'prod-1', quantity = 2, unitPriceCents = 350, totalCents = 700 },
  })
end}
-- bench_transition_shape: a compare-and-set transition that keeps what wf_transition keeps (history
-- entry, event in the stream and published, ARGV[4] index entries moved), without decoding a machine
-- (the allowed target is the caller's) and with concatenated texts. KEYS[1] workflow hash, [2] history,
-- [3..4] indexes by state, [5] stream. ARGV[1] expected state, [2] new state, [3] channel, [4] indexes.
redis.register_function('bench_transition_shape', function(keys, args)
  local cur = redis.call('HMGET', keys[1], 'state', 'version', 'updatedAt')
  if cur[1] ~= args[1] then return redis.error_reply('STATE_CONFLICT') end
  local t = redis.call('TIME')
  local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local version = string.format('%d', tonumber(cur[2]) + 1)
  redis.call('HSET', keys[1], 'state', args[2], 'version', version, 'updatedAt', now)
  redis.call('RPUSH', keys[2], '{"from":"' .. args[1] .. '","to":"' .. args[2] .. '","at":' .. now .. ',"version":' .. version .. ',"metadata":{}}')
  for i = 1, tonumber(args[4]) do
    redis.call('ZREM', keys[2 + i], args[1] .. ':' .. (cur[3] or '0') .. ':' .. keys[1])
    redis.call('ZADD', keys[2 + i], 0, args[2] .. ':' .. now .. ':' .. keys[1])
  end
  local event = '{"type":"WORKFLOW_TRANSITION","from":"' .. args[1] .. '","to":"' .. args[2] .. '","version":' .. version .. ',"at":' .. now .. ',"metadata":{}}'
  local event_id = redis.call('XADD', keys[5], 'MAXLEN', '~', 100000, '*', 'type', 'WORKFLOW_TRANSITION', 'data', event)
  redis.call('PUBLISH', args[3], '{"eventId":"' .. event_id .. '",' .. event:sub(2))
  return '{"state":"' .. args[2] .. '","version":' .. version .. ',"updatedAt":' .. now .. '}'
end)
-- 20 redis.call of a trivial command (KEYS[1]): what calling Redis from Lua costs beyond the command.
redis.register_function{function_name = 'bench_call_overhead', flags = {'no-writes'}, callback = function(keys)
  for _ = 1, 20 do redis.call('EXISTS', keys[1]) end
  return 1
end}
-- bench_order_shape: what order_process writes (hash of 14 fields, history entry, account list, the
-- events, publishes) and its checks, without decoding the machine (its initial state and allowed
-- transitions as constants) and with the reply concatenated (ids match [A-Za-z0-9_.-], so they need no
-- escaping); ARGV[8] how many of the 4 indexes to write, ARGV[9] how many of the 2 events to XADD.
-- KEYS[1] stock, [2] balance, [3] order hash, [4] account list, [5] history, [6..9] indexes, [10] stream.
-- ARGV[1] workflow channel, [2] orders channel, [3] order id, [4] user id, [5] product id,
-- [6] quantity, [7] unit price.
redis.register_function('bench_order_shape', function(keys, args)
  local id, user, product = args[3], args[4], args[5]
  for _, s in ipairs({ id, user, product }) do
    if not s:find('^[A-Za-z0-9][A-Za-z0-9_.%-]*$') then return redis.error_reply('BAD_USER_INPUT id') end
  end
  local quantity, price = tonumber(args[6]), tonumber(args[7])
  local total = quantity * price
  if redis.call('EXISTS', keys[3]) == 1 then return redis.error_reply('ALREADY_EXISTS') end
  if tonumber(redis.call('GET', keys[1]) or '0') < quantity then return redis.error_reply('OUT_OF_STOCK') end
  if tonumber(redis.call('GET', keys[2]) or '0') < total then return redis.error_reply('INSUFFICIENT_FUNDS') end
  local t = redis.call('TIME')
  local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local totals = string.format('%d', total)
  redis.call('DECRBY', keys[1], quantity)
  redis.call('DECRBY', keys[2], total)
  redis.call('HSET', keys[3], 'id', id, 'machine', 'order', 'machineVersion', '1', 'state', 'pending', 'version', '1',
    'createdAt', now, 'updatedAt', now, 'kind', 'order', 'userId', user, 'productId', product,
    'quantity', args[6], 'unitPriceCents', args[7], 'totalCents', totals)
  redis.call('RPUSH', keys[5], '{"from":null,"to":"pending","at":' .. now .. ',"version":1,"metadata":{}}')
  local member = string.format('%013d', 9999999999999 - tonumber(now)) .. ':' .. id .. ':order'
  for i = 1, tonumber(args[8]) do
    redis.call('ZADD', keys[5 + i], 0, (i % 2 == 0) and ('pending:' .. member) or member)
  end
  redis.call('LPUSH', keys[4], id)
  local events = {
    { args[1], 'WORKFLOW_TRANSITION', '{"type":"WORKFLOW_TRANSITION","workflowId":"' .. id .. '","machine":"order","from":null,"to":"pending","version":1,"at":' .. now .. ',"metadata":{}}' },
    { args[2], 'ORDER_CONFIRMED', '{"type":"ORDER_CONFIRMED","orderId":"' .. id .. '","userId":"' .. user .. '","state":"pending","totalCents":' .. totals .. ',"at":' .. now .. '}' },
  }
  for i, e in ipairs(events) do
    local event_id = '0-0'
    if i <= tonumber(args[9]) then event_id = redis.call('XADD', keys[10], 'MAXLEN', '~', 100000, '*', 'type', e[2], 'data', e[3]) end
    redis.call('PUBLISH', e[1], '{"eventId":"' .. event_id .. '",' .. e[3]:sub(2))
  end
  return '{"id":"' .. id .. '","machine":"order","machineVersion":1,"state":"pending","version":1,"createdAt":' .. now
    .. ',"updatedAt":' .. now .. ',"kind":"order","metadata":{},"allowedTransitions":["paid","cancelled"],"order":{"userId":"'
    .. user .. '","productId":"' .. product .. '","quantity":' .. args[6] .. ',"unitPriceCents":' .. args[7] .. ',"totalCents":' .. totals .. '}}'
end)
`;

interface CommandStat {
  calls: number;
  usec: number;
}

async function commandStats(redis: Redis): Promise<Map<string, CommandStat>> {
  const stats = new Map<string, CommandStat>();
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m) stats.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return stats;
}

interface Cost {
  name: string;
  /** usec_per_call of FCALL/FCALL_RO while only this function ran. */
  usecPerCall: number;
  /** The commands it ran, per call: name, count, usec. */
  inner: { command: string; perCall: number; usec: number }[];
}

/**
 * Runs `call` `COST_CALLS` times, one after the other (usec_per_call is time inside Redis, which
 * concurrency does not change), alone between CONFIG RESETSTAT and INFO commandstats.
 */
async function costOf(redis: Redis, name: string, call: (i: number) => Promise<unknown>): Promise<Cost> {
  // In batches, keeping the cheapest: on a shared machine Redis is sometimes descheduled in the
  // middle of a call, which only ever adds time.
  let best: Cost | null = null;
  const batch = COST_CALLS / COST_BATCHES;
  for (let b = 0; b < COST_BATCHES; b++) {
    const cost = await costOfBatch(redis, name, b * batch, batch, call);
    if (!best || cost.usecPerCall < best.usecPerCall) best = cost;
  }
  progress(
    `bench: cost ${name}: ${best!.usecPerCall.toFixed(1)} µs/call; commands: ${best!.inner.map((x) => `${x.perCall.toFixed(0)} ${x.command} ${x.usec.toFixed(1)} µs`).join(', ') || 'none'}`,
  );
  return best!;
}

async function costOfBatch(redis: Redis, name: string, from: number, count: number, call: (i: number) => Promise<unknown>): Promise<Cost> {
  await redis.config('RESETSTAT');
  for (let i = from; i < from + count; i++) await call(i);
  const stats = await commandStats(redis);
  const fcall = [stats.get('fcall'), stats.get('fcall_ro')].filter((s): s is CommandStat => !!s && s.calls > 0);
  const calls = fcall.reduce((s, x) => s + x.calls, 0);
  const usec = fcall.reduce((s, x) => s + x.usec, 0);
  const inner = [...stats.entries()]
    .filter(([cmd]) => !['fcall', 'fcall_ro', 'config', 'info'].includes(cmd))
    .map(([command, s]) => ({ command, perCall: s.calls / calls, usec: s.usec / calls }))
    .filter((x) => x.perCall > 0.01)
    .sort((a, b) => b.usec - a.usec);
  return { name, usecPerCall: usec / calls, inner };
}

/** MEMORY USAGE summed over `keys`. */
async function memoryUsage(redis: Redis, keys: string[]): Promise<number> {
  let total = 0;
  for (const key of keys) total += Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
  return total;
}

async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
}

interface CostReport {
  costs: Map<string, Cost>;
  orderBytesOwnKeys: number;
  orderBytesGrowth: number;
  minimalBytesOwnKeys: number;
  minimalBytesGrowth: number;
}

async function redisCosts(redis: Redis): Promise<CostReport> {
  const costs = new Map<string, Cost>();
  const add = (c: Cost) => costs.set(c.name, c);
  await redis.call('FUNCTION', 'LOAD', 'REPLACE', BENCH_LIBRARY_CODE);
  try {
    // the real functions, on a tenant of their own
    const tenant = 'bench-cost';
    const engine = new Engine(redis);
    const k = tenantKeys(tenant);
    await engine.orders.restock(tenant, 'p', INITIAL_STOCK);
    await engine.orders.deposit(tenant, 'u', INITIAL_BALANCE);
    await engine.workflows.ensureOrderMachine(tenant);
    await engine.workflows.defineMachine(tenant, {
      name: MACHINE,
      initialState: 'a',
      states: ['a', 'b'],
      transitions: [
        { from: 'a', to: ['b'] },
        { from: 'b', to: ['a'] },
      ],
    });
    const flows = await startFlows(engine, 'cost-wf', 16, tenant);
    let before = await usedMemory(redis);
    add(
      await costOf(redis, 'order_process', (i) =>
        engine.orders.processOrder(tenant, { orderId: `cost-${i}`, userId: 'u', productId: 'p', quantity: 1, unitPriceCents: 100 }),
      ),
    );
    const orderBytesGrowth = ((await usedMemory(redis)) - before) / COST_CALLS;
    const orderBytesOwnKeys = await memoryUsage(redis, [k.workflow('cost-0'), k.workflowHistory('cost-0')]);
    add(
      await costOf(redis, 'wf_transition', async (i) => {
        const flow = flows[i % flows.length]!;
        const to = other(flow.state);
        await engine.workflows.transition(tenant, { id: flow.id, from: flow.state, to });
        flow.state = to;
      }),
    );

    // the minimal ones, on another tenant
    const m = tenantKeys('bench-minimal');
    await redis.set(m.productStock('p'), INITIAL_STOCK);
    await redis.set(m.accountBalance('u'), INITIAL_BALANCE);
    before = await usedMemory(redis);
    add(
      await costOf(redis, 'bench_process_order', (i) =>
        redis.fcall('bench_process_order', 4, m.productStock('p'), m.accountBalance('u'), m.workflow(`min-${i}`), m.accountOrders('u'), m.ordersChannel(), `min-${i}`, 'u', 'p', 1, 100),
      ),
    );
    const minimalBytesGrowth = ((await usedMemory(redis)) - before) / COST_CALLS;
    const minimalBytesOwnKeys = await memoryUsage(redis, [m.workflow('min-0')]);
    const casFlows = Array.from({ length: 16 }, (_, i) => ({ key: m.workflow(`cas-${i}`), state: 'a' as 'a' | 'b' }));
    for (const f of casFlows) await redis.hset(f.key, 'state', 'a', 'version', 1);
    add(
      await costOf(redis, 'bench_cas_transition', async (i) => {
        const flow = casFlows[i % casFlows.length]!;
        const from = flow.state;
        flow.state = other(from);
        await redis.fcall('bench_cas_transition', 1, flow.key, from, flow.state);
      }),
    );

    for (const indexes of [2, 0]) {
      const flowsT = Array.from({ length: 16 }, (_, i) => ({ id: `tshape${indexes}-${i}`, state: 'a' as 'a' | 'b' }));
      for (const f of flowsT) await redis.hset(m.workflow(f.id), 'state', 'a', 'version', 1, 'updatedAt', 0);
      add(
        await costOf(redis, `bench_transition_shape ${indexes}`, async (i) => {
          const flow = flowsT[i % flowsT.length]!;
          const from = flow.state;
          flow.state = other(from);
          await redis.fcall(
            'bench_transition_shape',
            5,
            m.workflow(flow.id),
            m.workflowHistory(flow.id),
            m.indexAllByState(),
            m.indexMachineByState(MACHINE),
            m.events(),
            from,
            flow.state,
            m.workflowChannel(),
            indexes,
          );
        }),
      );
    }

    // profiling variants
    add(await costOf(redis, 'bench_noop', () => redis.fcall_ro('bench_noop', 0)));
    add(await costOf(redis, 'bench_machine_decode', () => redis.fcall_ro('bench_machine_decode', 1, k.machine('order'))));
    add(await costOf(redis, 'bench_reply_encode', () => redis.fcall_ro('bench_reply_encode', 1, k.machine('order'))));
    add(await costOf(redis, 'bench_call_overhead', () => redis.fcall_ro('bench_call_overhead', 1, k.machine('order'))));
    const s = tenantKeys('bench-shape');
    await redis.set(s.productStock('p'), INITIAL_STOCK);
    await redis.set(s.accountBalance('u'), INITIAL_BALANCE);
    for (const [indexes, streams] of ORDER_SHAPES) {
      const prefix = `shape${indexes}${streams}`;
      add(
        await costOf(redis, `bench_order_shape ${indexes} ${streams}`, (i) =>
          redis.fcall(
            'bench_order_shape',
            10,
            s.productStock('p'),
            s.accountBalance('u'),
            s.workflow(`${prefix}-${i}`),
            s.accountOrders('u'),
            s.workflowHistory(`${prefix}-${i}`),
            s.indexAll(),
            s.indexAllByState(),
            s.indexMachine('order'),
            s.indexMachineByState('order'),
            s.events(),
            s.workflowChannel(),
            s.ordersChannel(),
            `${prefix}-${i}`,
            'u',
            'p',
            1,
            100,
            indexes,
            streams,
          ),
        ),
      );
    }
    return { costs, orderBytesOwnKeys, orderBytesGrowth, minimalBytesOwnKeys, minimalBytesGrowth };
  } finally {
    await redis.call('FUNCTION', 'DELETE', BENCH_LIBRARY).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------
// Output

function fmt(n: number | undefined, digits: number): string {
  return n !== undefined && Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '';
}

function table(): string {
  const header = ['benchmark', 'ops/s', 'p50 ms', 'p99 ms', 'server CPU µs/op', 'result', 'target'];
  const body = rows.map((r) => [r.name, fmt(r.m?.opsPerSec, 0), fmt(r.m?.p50, 2), fmt(r.m?.p99, 2), fmt(r.m?.cpuUsPerOp, 0), r.result ?? '', r.target ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = (i: number) => i >= 1 && i <= 4;
  const line = (cells: string[]) => `| ${cells.map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (numeric(i) ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

/**
 * The GraphQL row's result and target against the bare route's: each ratio is the median of the
 * ratios of one round (GraphQL and bare measured next to each other, under the same load).
 */
function versusBare(gql: Measure[], bare: Measure[]): { result: string; target: string } {
  const perRound = (f: (m: Measure) => number | undefined) => median(gql.map((g, i) => (f(g) ?? NaN) / (f(bare[i]!) ?? NaN)));
  const ratio = perRound((m) => m.opsPerSec);
  const p99 = perRound((m) => m.p99);
  const cpu = perRound((m) => m.cpuUsPerOp);
  const result = `${ratio.toFixed(2)} of bare; p99 ${p99.toFixed(2)}x${Number.isFinite(cpu) ? `; CPU/op ${cpu.toFixed(2)}x` : ''}`;
  const throughput =
    ratio >= RATIO_TARGET
      ? `✓ ≥ ${RATIO_TARGET.toFixed(2)}`
      : ratio >= RATIO_MILESTONE
        ? `✗ < ${RATIO_TARGET.toFixed(2)} (milestone ${RATIO_MILESTONE.toFixed(2)} ✓)`
        : `✗ < ${RATIO_MILESTONE.toFixed(2)} (milestone)`;
  const latency = p99 <= P99_RATIO_LIMIT ? `p99 ✓ ≤ ${P99_RATIO_LIMIT}x` : `p99 ✗ > ${P99_RATIO_LIMIT}x`;
  return { result, target: `${throughput}; ${latency}` };
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const startedAt = performance.now();
  const resources: { redis?: PrivateRedis; servers: ServerProcess[]; clients: Redis[]; ws?: Client; agents: http.Agent[] } = {
    servers: [],
    clients: [],
    agents: [],
  };
  const cleanup = async () => {
    const steps: (() => unknown)[] = [
      () => resources.ws?.dispose(),
      () => resources.agents.forEach((a) => a.destroy()),
      () => resources.clients.forEach((c) => c.disconnect()),
      () => Promise.all(resources.servers.map((s) => s.stop())),
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
    progress('bench: starting redis-server, atomflow and the bare route');
    const privateRedis = await startPrivateRedis();
    resources.redis = privateRedis;
    const server = await startServerProcess('atomflow', 'src/main.ts', privateRedis.url, /GraphQL endpoint: ([^\s"]+)/);
    resources.servers.push(server);
    const bareServer = await startServerProcess('bare', 'scripts/bench-bare-server.ts', privateRedis.url, /bare endpoint: (\S+)/);
    resources.servers.push(bareServer);
    // One keep-alive connection per HTTP client, opened in the server warm-up and reused by every row.
    const gqlAgent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const bareAgent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    resources.agents.push(gqlAgent, bareAgent);
    const gql = graphqlClient(server.url, gqlAgent);
    const bare = bareClient(bareServer.url, bareAgent);
    // The engine rows use a plain connection of their own, with the servers' options (commands are
    // written as they are issued; auto-pipelining measured slower for many concurrent FCALLs).
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
    const engineFlows = await startFlows(engine, 'engine-wf', CONCURRENCY * FLOWS_PER_CLIENT);
    // The server process learns their routes (cached by its engine) on first use, in the server warm-up.
    const httpFlows = await startFlows(engine, 'http-wf', CONCURRENCY * FLOWS_PER_CLIENT);
    const [subFlow] = await startFlows(engine, 'sub-wf', 1);
    const readFlows = await startFlows(engine, 'read-wf', READ_FLOWS);
    for (let i = 0; i < READ_FLOW_TRANSITIONS; i++) {
      await Promise.all(
        readFlows.map(async (flow) => {
          const to = other(flow.state);
          const wf = await engine.workflows.transition(TENANT, { id: flow.id, from: flow.state, to });
          flow.state = to;
          flow.version = wf.version;
        }),
      );
    }
    const readVersion = 1 + READ_FLOW_TRANSITIONS;
    const readFlow = (c: number, n: number) => readFlows[(c + n) % READ_FLOWS]!;

    // ---- the three operations, three ways; each checks its answer
    type Path = 'engine' | 'bare' | 'graphql';
    const checkOrder = (o: ProcessOrderInput, order: { id: string; state: string; totalCents: number }) => {
      if (order.id !== o.orderId || order.state !== 'pending') throw new Error(`unexpected order ${JSON.stringify(order)}`);
      recordConfirmed(o, order.totalCents);
    };
    const checkProduct = (id: string, product: { id: string; stock: number } | null) => {
      if (product?.id !== id || !(product.stock > 0)) throw new Error(`unexpected product ${JSON.stringify(product)}`);
    };
    interface WorkflowRead {
      id: string;
      version: number;
      history: { entries: unknown[] };
    }
    const checkWorkflow = (id: string, wf: WorkflowRead | null) => {
      if (wf?.id !== id || wf.version !== readVersion || wf.history.entries.length !== 10) throw new Error(`unexpected workflow ${JSON.stringify(wf)}`);
    };
    const operations: { name: string; ops: Record<Path, Op> }[] = [
      {
        name: 'processOrder',
        ops: {
          engine: async () => {
            const o = nextOrder('e');
            checkOrder(o, await engine.orders.processOrder(TENANT, o));
          },
          bare: async () => {
            const o = nextOrder('b');
            checkOrder(o, await bare('POST', '/order', o));
          },
          graphql: async () => {
            const o = nextOrder('g');
            checkOrder(o, (await gql<{ processOrder: { id: string; state: string; totalCents: number } }>(PROCESS_ORDER, { input: o })).processOrder);
          },
        },
      },
      {
        name: 'product(id)',
        ops: {
          engine: async (c, n) => {
            const id = productId((c + n) % PRODUCTS);
            checkProduct(id, await engine.orders.product(TENANT, id));
          },
          bare: async (c, n) => {
            const id = productId((c + n) % PRODUCTS);
            checkProduct(id, await bare('GET', `/product?id=${id}`));
          },
          graphql: async (c, n) => {
            const id = productId((c + n) % PRODUCTS);
            checkProduct(id, (await gql<{ product: { id: string; stock: number } | null }>(PRODUCT_QUERY, { id })).product);
          },
        },
      },
      {
        name: 'workflow(id) + history(first: 10)',
        ops: {
          engine: async (c, n) => {
            const { id } = readFlow(c, n);
            const wf = await engine.workflows.get(TENANT, id);
            const page = wf && (await engine.workflows.history(TENANT, wf.id, { first: 10 }));
            checkWorkflow(id, wf && page && { id: wf.id, version: wf.version, history: { entries: page.items } });
          },
          bare: async (c, n) => {
            const { id } = readFlow(c, n);
            checkWorkflow(id, await bare('GET', `/workflow?id=${id}`));
          },
          graphql: async (c, n) => {
            const { id } = readFlow(c, n);
            checkWorkflow(id, (await gql<{ workflow: WorkflowRead | null }>(WORKFLOW_QUERY, { id })).workflow);
          },
        },
      },
    ];

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

    // Server warm-up: every operation in turn on each server (not a row; its errors fail the run like a row's)
    for (const [label, path] of [
      ['atomflow', 'graphql'],
      ['bare route', 'bare'],
    ] as const) {
      progress(`bench: ${label} warm-up (concurrency ${CONCURRENCY}, ${SERVER_WARMUP_MS} ms of its operations)`);
      const ops = operations.map((o) => o.ops[path]);
      if (path === 'graphql') ops.push(httpTransition);
      const warm = await runFor(SERVER_WARMUP_MS, CONCURRENCY, (c, n) => ops[(c + n) % ops.length]!(c, n));
      if (warm.errors > 0) {
        progress(`  ${warm.errors} errors, first: ${warm.firstError}`);
        failed.push({ name: `${label} warm-up`, errors: warm.errors, firstError: warm.firstError });
      }
    }

    // Rounds: each measures every operation three ways in turn; medians over rounds
    const results = operations.map(() => ({ engine: [] as Measure[], bare: [] as Measure[], graphql: [] as Measure[] }));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [i, operation] of operations.entries()) {
        // every other round in reverse order, so that a drift in the machine's load favours neither side
        const order = round % 2 === 1 ? (['engine', 'bare', 'graphql'] as const) : (['graphql', 'bare', 'engine'] as const);
        for (const path of order) {
          const pid = path === 'bare' ? bareServer.child.pid : path === 'graphql' ? server.child.pid : undefined;
          results[i]![path].push(await measure(`round ${round}/${ROUNDS}: ${operation.name}, ${path}`, CONCURRENCY, operation.ops[path], pid));
        }
      }
    }
    for (const [i, operation] of operations.entries()) {
      const r = results[i]!;
      addRow({ name: `${operation.name}: engine in-process`, m: medianOf(r.engine) });
      addRow({ name: `${operation.name}: bare node:http route`, m: medianOf(r.bare) });
      addRow({ name: `${operation.name}: atomflow GraphQL`, m: medianOf(r.graphql), ...versusBare(r.graphql, r.bare) });
    }

    // transitionWorkflow, engine and GraphQL; each client moves only its own workflows
    addRow({
      name: 'transitionWorkflow: engine in-process',
      m: await measure('transitionWorkflow, engine', CONCURRENCY, async (c, n) => {
        const flow = engineFlows[c * FLOWS_PER_CLIENT + (n % FLOWS_PER_CLIENT)]!;
        const to = other(flow.state);
        const wf = await engine.workflows.transition(TENANT, { id: flow.id, from: flow.state, to });
        if (wf.state !== to || wf.version !== flow.version + 1) throw new Error(`unexpected workflow ${wf.id} ${wf.state} v${wf.version}`);
        flow.state = to;
        flow.version = wf.version;
      }),
    });
    addRow({ name: 'transitionWorkflow: atomflow GraphQL', m: await measure('transitionWorkflow, GraphQL', CONCURRENCY, httpTransition, server.child.pid) });

    // subscription delivery: from sending a transition to receiving its event over graphql-ws
    const channel = tenantKeys(TENANT).workflowChannel();
    // Redis' count of subscribed connections on the channel: the server's relay subscribes once per
    // channel, so one more means the subscription is live (events published from then on reach it).
    const subscribers = async () => Number(((await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]);
    const before = await subscribers();
    const arrivals = new Map<number, (at: number) => void>();
    let subscriptionError: unknown = null;
    const ws = createClient({
      url: server.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0,
      connectionParams: { authorization: AUTHORIZATION },
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
    addRow({
      name: 'subscription delivery (mutation -> event), 1 client',
      m: await measure('subscription delivery (mutation -> event)', 1, async () => {
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
      }),
    });

    // the seed's claim
    for (const r of await raceThreeWays(privateRedis.url)) {
      const opsPerSec = r.sold / (r.elapsedMs / 1000);
      const m: Measure = { operations: r.sold, opsPerSec, p50: NaN, p99: NaN, errors: r.errors, firstError: r.firstError };
      addRow({
        name: `race for ${RACE_STOCK} units, ${CONCURRENCY} clients: ${r.way}`,
        m,
        result: `${r.sold} sold; ${(r.aborts / Math.max(1, r.sold)).toFixed(1)} aborts per success; ${r.oversold} oversold`,
        target: r.way.startsWith('Redis Function') ? (r.oversold === 0 && r.sold === RACE_STOCK ? '✓ sells exactly the stock' : '✗ must sell exactly the stock') : '',
      });
    }

    // Redis cost per call, and memory per order
    const cost = await redisCosts(redis);
    const c = (name: string) => cost.costs.get(name)!;
    for (const [real, minimal] of [
      ['order_process', 'bench_process_order'],
      ['wf_transition', 'bench_cas_transition'],
    ] as const) {
      const ratio = c(real).usecPerCall / c(minimal).usecPerCall;
      addRow({
        name: `Redis µs per call: ${real} vs minimal ${minimal}`,
        result: `${c(real).usecPerCall.toFixed(1)} vs ${c(minimal).usecPerCall.toFixed(1)} µs: ${ratio.toFixed(1)}x`,
        target: ratio <= COST_TARGET ? `✓ ≤ ${COST_TARGET}x` : `✗ > ${COST_TARGET}x`,
      });
    }
    const commandsOf = (name: string) => c(name).inner.reduce((s, x) => s + x.usec, 0);
    addRow({
      name: 'Redis µs per call, profile of order_process',
      result:
        `commands ${commandsOf('order_process').toFixed(1)} (Lua ${(c('order_process').usecPerCall - commandsOf('order_process')).toFixed(1)}); ` +
        `FCALL floor ${c('bench_noop').usecPerCall.toFixed(1)}; decode machine ${(c('bench_machine_decode').usecPerCall - c('bench_noop').usecPerCall).toFixed(1)}; ` +
        `+ encode reply ${(c('bench_reply_encode').usecPerCall - c('bench_machine_decode').usecPerCall).toFixed(1)}`,
    });
    const minimalOrder = c('bench_process_order').usecPerCall;
    const shape = (indexes: number, streams: number) => {
      const u = c(`bench_order_shape ${indexes} ${streams}`).usecPerCall;
      return `${u.toFixed(1)} µs (${(u / minimalOrder).toFixed(1)}x)`;
    };
    const perRedisCall = (c('bench_call_overhead').usecPerCall - c('bench_noop').usecPerCall) / 20;
    addRow({
      name: 'Redis µs per call, order_process reshaped (bench_order_shape)',
      result:
        `same writes, no JSON decode/encode: ${shape(4, 2)}; 2 indexes + 1 stream entry: ${shape(2, 1)}; ` +
        `no index + 1 stream entry: ${shape(0, 1)}; each redis.call from Lua ${perRedisCall.toFixed(2)} µs`,
      target: ORDER_SHAPES.map(([i, st]) => (c(`bench_order_shape ${i} ${st}`).usecPerCall <= COST_TARGET * minimalOrder ? '✓' : '✗')).join(' '),
    });
    const cas = c('bench_cas_transition').usecPerCall;
    const tshape = (indexes: number) => {
      const u = c(`bench_transition_shape ${indexes}`).usecPerCall;
      return `${u.toFixed(1)} µs (${(u / cas).toFixed(1)}x)`;
    };
    addRow({
      name: 'Redis µs per call, wf_transition reshaped (bench_transition_shape)',
      result: `history + event + 2 index moves, no JSON: ${tshape(2)}; history + event, no index: ${tshape(0)}`,
      target: [2, 0].map((i) => (c(`bench_transition_shape ${i}`).usecPerCall <= COST_TARGET * cas ? '✓' : '✗')).join(' '),
    });
    addRow({
      name: 'Redis bytes per order: order_process vs minimal',
      result:
        `own keys ${fmt(cost.orderBytesOwnKeys, 0)} vs ${fmt(cost.minimalBytesOwnKeys, 0)}; ` +
        `used_memory growth ${fmt(cost.orderBytesGrowth, 0)} vs ${fmt(cost.minimalBytesGrowth, 0)}`,
    });

    progress('bench: checking orders');
    const checks = [...(await checkOrders(redis)), await checkNoOversell(engine, redis)];

    const cpus = os.cpus();
    const out: string[] = [];
    out.push(`command: ${COMMAND_LINE}`);
    out.push(
      `atomflow benchmark: ${ROUNDS} round(s) of ${WARMUP_MS} ms warm-up + ${DURATION_MS} ms per row (medians), ${SERVER_WARMUP_MS} ms warm-up per server, ${CONCURRENCY} connections`,
    );
    out.push(`machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`);
    out.push(
      `node ${process.version}, redis-server ${redisVersion}; servers: separate processes (node --import tsx), NODE_ENV=production, worker off`,
    );
    out.push('');
    out.push(table());
    out.push('');
    out.push('engine: the typed engine (src/engine) over one ioredis connection in the bench process.');
    out.push('bare: scripts/bench-bare-server.ts, node:http making the same engine calls, JSON in and out.');
    out.push(`GraphQL: POST /graphql to atomflow (src/main.ts). HTTP clients: node:http keep-alive, ${CONCURRENCY} sockets per server.`);
    out.push(`Each server runs on one event loop; clients, servers and redis-server share the machine's ${cpus.length} cores,`);
    out.push('so absolute figures depend on what else runs: compare the ratios, which are measured side by side.');
    out.push('race: each client on its own connection orders 1 unit at a time until it sees the stock at 0.');
    out.push(`Redis: usec_per_call of FCALL (INFO commandstats), ${COST_CALLS} calls of one function at a time in ${COST_BATCHES} batches, the cheapest batch.`);
    for (const name of ['order_process', 'bench_process_order', ...ORDER_SHAPES.map(([i, st]) => `bench_order_shape ${i} ${st}`), 'wf_transition', 'bench_cas_transition', 'bench_transition_shape 2', 'bench_transition_shape 0']) {
      out.push(`  ${name}: ${c(name).usecPerCall.toFixed(1)} µs, commands: ${c(name).inner.map((x) => `${fmt(x.perCall, 0)} ${x.command.toUpperCase()} ${x.usec.toFixed(1)} µs`).join(', ')}`);
    }
    out.push('');
    for (const check of checks) out.push(`${check.ok ? '✓' : '✗'} ${check.text}`);
    for (const r of failed) out.push(`✗ ${r.name}: ${r.errors} failed operations, first: ${r.firstError}`);
    process.stdout.write(`${out.join('\n')}\n`);
    return checks.every((check) => check.ok) && failed.length === 0 ? 0 : 1;
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
