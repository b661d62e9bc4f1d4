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
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
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
import { costDetails, costRows, PINGPONG, redisCosts } from './bench-redis-cost.js';
import { parseBenchArgs } from './bench-args.js';

// ---------------------------------------------------------------------------------------------------
// Settings

const USAGE = 'usage: npm run bench [-- --quick] [-- --duration=<ms per row>] [-- --rounds=<n>]';
const { argv, quick: QUICK, durationMs: DURATION_MS, rounds: ROUNDS } = parseBenchArgs(USAGE, 5);
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
const MACHINE = PINGPONG.name;
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
/** Redis cost: calls per function (scripts/bench-redis-cost.ts). */
const COST_CALLS = QUICK ? 1000 : 5000;

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
 * stdout (atomflow's JSON log: a line per request) goes to a file, as a production log would, not
 * through this process, which is the load generator: reading a line per GraphQL request here would
 * slow the clients of GraphQL rows only. Its stderr lines go to stderr, prefixed `<label>|`.
 */
function startServerProcess(label: string, script: string, redisUrl: string, endpoint: RegExp): Promise<ServerProcess> {
  const logFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'atomflow-bench-')), `${label}.log`);
  const logFd = openSync(logFile, 'w');
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
    stdio: ['ignore', logFd, 'pipe'],
  });
  closeSync(logFd);
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
    child.once('close', (code, signal) => fail(`${label} exited at start (${signal ?? `code ${code}`}): ${[...stderrTail, ...readFileSync(logFile, 'utf8').split('\n').slice(-20)].join('\n')}`));
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
      progress(`${label}| ${line}`);
    });
    // the endpoint line, from the log file, checked until it is there
    const poll = setInterval(() => {
      const url = endpoint.exec(readFileSync(logFile, 'utf8'))?.[1];
      if (!url || settled) return;
      settled = true;
      started = true;
      clearTimeout(timer);
      clearInterval(poll);
      progress(`bench: ${label} at ${url}, its log in ${logFile}`);
      resolve({ url, child, stop });
    }, 50);
    child.once('close', () => clearInterval(poll));
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
    await engine.workflows.defineMachine(TENANT, PINGPONG);
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

    // Redis cost per call, and memory per order (scripts/bench-redis-cost.ts)
    const cost = await redisCosts(redis, { calls: COST_CALLS, progress });
    for (const row of costRows(cost)) addRow(row);

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
    out.push(...costDetails(cost, COST_CALLS));
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
