/**
 * npm run bench:fanout [-- --quick]
 *
 * Fan-out of live events, measured side by side in one run: the server with identical subscriptions
 * sharing one execution (SUBSCRIPTION_SHARING=true, the default) against the same server with sharing
 * off (graphql-ws' own path: one execution and one serialization per subscriber per event).
 *
 * - deliveries/s: 200 sockets each hold the same workflowEvents subscription; the bench makes events
 *   as fast as Redis takes them and times until every socket has every event (0 lost is checked).
 * - memory per idle subscriber: the server's heap + external memory after a full GC with 500 idle
 *   subscriptions (one socket each), minus the same with none, divided by 500.
 *
 * Each mode runs in a fresh server process (`node --expose-gc --import tsx`) on a private
 * redis-server; the bench process is the load generator (raw `ws` sockets, messages counted, not
 * parsed). Both share this machine's cores, so the ratio is the figure to read. The server verifies
 * tokens with a per-run random AUTH_JWT_SECRET (rate limit off); every socket's connection_init
 * carries an admin token of tenant `default` signed with it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { Engine } from '../src/app/engine.js';
import { loadFunctions } from '../src/redis/functions.js';
import { startPrivateRedis } from '../test/setup/private-redis.js';

const quick = process.argv.includes('--quick');
const SUBSCRIBERS = 200;
const EVENTS = quick ? 200 : 1000;
const IDLE = quick ? 200 : 500;
const TARGET_SPEEDUP = 5;
const TARGET_IDLE_BYTES = 25 * 1024;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUERY = 'subscription($machine: String) { workflowEvents(machine: $machine) { eventId workflowId from to version at } }';
/** The server under test verifies tokens with this per-run secret. */
const BENCH_SECRET = randomBytes(32).toString('base64url');
const BENCH_TOKEN = await new SignJWT({ tenant: 'default', role: 'admin' })
  .setProtectedHeader({ alg: 'HS256' })
  .setSubject('bench')
  .setExpirationTime('12h')
  .sign(new TextEncoder().encode(BENCH_SECRET));
const CONNECTION_INIT = JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${BENCH_TOKEN}` } });
/** Workflows moved at once: enough events per second that the server, not the producer, is the limit. */
const PRODUCERS = 16;

interface ServerProcess {
  wsUrl: string;
  memory(): Promise<number>;
  stop(): Promise<void>;
}

function startServer(redisUrl: string, sharing: boolean): Promise<ServerProcess> {
  const child: ChildProcess = fork(fileURLToPath(new URL('./bench-fanout-server.ts', import.meta.url)), [], {
    cwd: ROOT,
    execArgv: ['--expose-gc', '--import', 'tsx'],
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      SUBSCRIPTION_SHARING: String(sharing),
      NODE_ENV: 'production',
      AUTH_JWT_SECRET: BENCH_SECRET,
      RATE_LIMIT_PER_S: '0',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  process.on('exit', () => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the server process exited with code ${code}`)));
    child.once('message', (message: { type: string; wsUrl: string }) => {
      resolve({
        wsUrl: message.wsUrl,
        memory: () =>
          new Promise((done) => {
            child.once('message', (m: { heapUsed: number; external: number }) => done(m.heapUsed + m.external));
            child.send({ type: 'memory' });
          }),
        stop: () =>
          new Promise((done) => {
            child.removeAllListeners('exit');
            child.once('exit', () => done());
            child.send({ type: 'stop' });
          }),
      });
    });
  });
}

interface Subscriber {
  socket: WebSocket;
  received: number;
}

/** A graphql-ws client that counts its `next` messages without parsing them. */
async function subscriber(wsUrl: string, machine: string, onNext: () => void): Promise<Subscriber> {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  const sub: Subscriber = { socket, received: 0 };
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('open', () => socket.send(CONNECTION_INIT));
    socket.on('message', (data: Buffer) => {
      const text = data.toString('latin1', 0, 40);
      if (text.includes('"next"')) {
        sub.received++;
        onNext();
      } else if (text.includes('connection_ack')) {
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: QUERY, variables: { machine } } }));
        resolve();
      } else if (text.includes('"error"')) reject(new Error(`subscription failed: ${data.toString()}`));
    });
  });
  return sub;
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Makes sure a subscription is live before measuring: one event every socket must receive. */
async function warmUp(engine: Engine, subs: Subscriber[], workflowId: string, state: { n: number }): Promise<void> {
  const start = subs.map((s) => s.received);
  for (let attempt = 0; attempt < 50; attempt++) {
    await move(engine, workflowId, state);
    try {
      await waitUntil(() => subs.every((s, i) => s.received > start[i]!), 'warm-up', 200);
      return;
    } catch {
      // not every subscription was live yet: another event
    }
  }
  throw new Error('the subscriptions never went live');
}

async function move(engine: Engine, id: string, state: { n: number }): Promise<void> {
  await engine.workflows.transition('default', { id, to: state.n % 2 === 0 ? 'b' : 'a' });
  state.n++;
}

interface ModeResult {
  deliveriesPerSecond: number;
  lost: number;
  idleBytesPerSubscriber: number;
}

async function runMode(redisUrl: string, engine: Engine, sharing: boolean): Promise<ModeResult> {
  const server = await startServer(redisUrl, sharing);
  const machine = `fanout${sharing ? 'On' : 'Off'}`;
  try {
    await engine.workflows.defineMachine('default', { name: machine, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }, { from: 'b', to: ['a'] }] });
    const flows = Array.from({ length: PRODUCERS }, (_, i) => ({ id: `${machine}-${i}`, state: { n: 0 } }));
    for (const flow of flows) await engine.workflows.start('default', { id: flow.id, machine });
    let delivered = 0;
    const subs = await Promise.all(Array.from({ length: SUBSCRIBERS }, () => subscriber(server.wsUrl, machine, () => delivered++)));
    await warmUp(engine, subs, flows[0]!.id, flows[0]!.state);
    const before = subs.map((s) => s.received);
    delivered = 0;
    const started = performance.now();
    // events as fast as Redis takes them: PRODUCERS workflows, each moved in turn
    let made = 0;
    await Promise.all(
      flows.map(async (flow) => {
        while (made < EVENTS) {
          made++;
          await move(engine, flow.id, flow.state);
        }
      }),
    );
    const expected = EVENTS * SUBSCRIBERS;
    await waitUntil(() => delivered >= expected, `${expected} deliveries (got ${delivered})`, 120_000);
    const seconds = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 200)); // anything beyond would be a duplicate
    const lost = subs.reduce((sum, s, i) => sum + Math.max(0, EVENTS - (s.received - before[i]!)), 0);
    const extra = subs.reduce((sum, s, i) => sum + Math.max(0, s.received - before[i]! - EVENTS), 0);
    if (extra > 0) throw new Error(`${extra} duplicate deliveries`);
    for (const s of subs) s.socket.terminate();

    // memory: idle subscriptions, one socket each
    await new Promise((r) => setTimeout(r, 300));
    const baseline = await server.memory();
    const idleMachine = `${machine}Idle`;
    await engine.workflows.defineMachine('default', { name: idleMachine, initialState: 'a', states: ['a', 'b'], transitions: [{ from: 'a', to: ['b'] }, { from: 'b', to: ['a'] }] });
    await engine.workflows.start('default', { id: idleMachine, machine: idleMachine });
    const idle = await Promise.all(Array.from({ length: IDLE }, () => subscriber(server.wsUrl, idleMachine, () => {})));
    await warmUp(engine, idle, idleMachine, { n: 0 });
    const loaded = await server.memory();
    for (const s of idle) s.socket.terminate();
    return { deliveriesPerSecond: expected / seconds, lost, idleBytesPerSubscriber: (loaded - baseline) / IDLE };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const redisServer = await startPrivateRedis();
  const redis = new Redis(redisServer.url);
  try {
    await loadFunctions(redis);
    const engine = new Engine(redis);
    const off = await runMode(redisServer.url, engine, false);
    const on = await runMode(redisServer.url, engine, true);
    const speedup = on.deliveriesPerSecond / off.deliveriesPerSecond;
    const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
    const rows = [
      ['mode', 'deliveries/s', 'lost', 'idle bytes/subscriber'],
      ['sharing off (graphql-ws per subscription)', fmt(off.deliveriesPerSecond), String(off.lost), fmt(off.idleBytesPerSubscriber)],
      ['sharing on (one execution per event)', fmt(on.deliveriesPerSecond), String(on.lost), fmt(on.idleBytesPerSubscriber)],
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    const line = (r: string[]) => `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`;
    console.log(`\nfan-out: ${SUBSCRIBERS} identical subscriptions, ${EVENTS} events; idle memory over ${IDLE} subscriptions`);
    console.log(`command: npm run bench:fanout${quick ? ' -- --quick' : ''}; ${os.availableParallelism()} cores; node ${process.version}`);
    console.log(line(rows[0]!));
    console.log(`| ${widths.map((w, c) => (c === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`);
    for (const r of rows.slice(1)) console.log(line(r));
    const flags: string[] = [];
    if (speedup < TARGET_SPEEDUP) flags.push(`BELOW TARGET: sharing gives ${speedup.toFixed(2)}x the deliveries/s (target ${TARGET_SPEEDUP}x)`);
    if (on.idleBytesPerSubscriber > TARGET_IDLE_BYTES) flags.push(`BELOW TARGET: ${fmt(on.idleBytesPerSubscriber)} bytes per idle subscriber (target ${fmt(TARGET_IDLE_BYTES)})`);
    if (on.lost + off.lost > 0) flags.push(`LOST EVENTS: ${on.lost + off.lost}`);
    console.log(`\nsharing / no sharing: ${speedup.toFixed(2)}x the deliveries per second (target ${TARGET_SPEEDUP}x)`);
    for (const f of flags) console.log(f);
    process.exitCode = on.lost + off.lost > 0 ? 1 : 0;
  } finally {
    redis.disconnect();
    await redisServer.stop();
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
