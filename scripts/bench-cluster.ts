/**
 * `npm run bench:cluster [-- --quick] [-- --duration=<ms>] [-- --rounds=<n>]` (also the last part of
 * `npm run bench`): atomflow on one Redis against atomflow on a Redis Cluster, on this machine.
 *
 * Starts a private redis-server and a 3-primary Redis Cluster on loopback (test/setup/redis-cluster.ts),
 * then:
 *   1. Orders/s: 3 tenants, each with 32 concurrent engine callers placing orders (processOrder, one
 *      Redis Function call each) for `--duration` ms (3000; 1000 with --quick), on one Redis and on the
 *      cluster with the 3 tenants' slots on 3 different primaries; `--rounds` rounds (3; 1 with
 *      --quick), alternating which goes first, medians shown. Beside it, the Redis time per order
 *      (INFO commandstats, usec_per_call of FCALL) and the ceiling of one primary, 1e6 / that: what
 *      one tenant (one slot) can reach at most whatever the cluster's size.
 *   2. Events on a cluster, classic PUBLISH against sharded SPUBLISH of a tenant channel: messages/s
 *      published to the primary owning the channel's slot, with a subscriber on every primary
 *      (classic: SUBSCRIBE on each, as server instances connected to different nodes would) or on the
 *      owner (sharded); and what each message costs the primaries that do not own the slot (their CPU,
 *      INFO cpu) and the cluster bus (cluster_stats_messages_publish(shard)_sent of the owner).
 *   3. Memory (one Redis, used_memory growth): per order (workflow, history, indexes, account index,
 *      its event), per workflow started (with its event), per transition (history entry and event).
 * Prints one markdown table per part on stdout; progress on stderr. Stops every redis-server it started.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Redis, type Cluster } from 'ioredis';
import { Engine } from '../src/app/engine.js';
import { connectRedis, keySlot, ownerOf, type RedisClient } from '../src/redis/client.js';
import { clusterTarget } from '../src/redis/connect.js';
import { readConfig } from '../src/config.js';
import { loadFunctions } from '../src/redis/functions.js';
import { tenantKeys } from '../src/redis/keys.js';
import { startPrivateRedis } from '../test/setup/private-redis.js';
import { startTestCluster } from '../test/setup/redis-cluster.js';
import { parseBenchArgs } from './bench-args.js';

const USAGE = 'usage: npm run bench:cluster [-- --quick] [-- --duration=<ms>] [-- --rounds=<n>]';
const { argv, quick: QUICK, durationMs: DURATION_MS, rounds: ROUNDS } = parseBenchArgs(USAGE, 3);
const CALLERS_PER_TENANT = 32;
const TENANTS = 3;
const PUBSUB_MESSAGES = QUICK ? 20_000 : 50_000;
const MEMORY_SAMPLE = QUICK ? 2_000 : 5_000;
const progress = (line: string) => process.stderr.write(`${line}\n`);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** A plain connection to one node. */
function node(port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

/** `count` tenant names whose slots are on `count` different primaries (one Redis: any). */
async function spreadTenants(client: RedisClient, label: string): Promise<string[]> {
  if (!('slots' in client)) return Array.from({ length: TENANTS }, (_, i) => `${label}${i}`);
  const byOwner = new Map<string, string>();
  for (let i = 0; byOwner.size < TENANTS; i++) {
    const tenant = `${label}${i}`;
    const owner = ownerOf(client, keySlot(tenantKeys(tenant).events()));
    if (owner && !byOwner.has(owner)) byOwner.set(owner, tenant);
  }
  return [...byOwner.values()];
}

/** usec_per_call and calls of FCALL on a node since its last CONFIG RESETSTAT. */
async function fcallStats(redis: Redis): Promise<{ calls: number; usec: number }> {
  const line = /cmdstat_fcall:calls=(\d+),usec=(\d+)/.exec(await redis.info('commandstats'));
  return { calls: Number(line?.[1] ?? 0), usec: Number(line?.[2] ?? 0) };
}

let run = 0;
/** Orders/s of 3 tenants with CALLERS_PER_TENANT callers each, and Redis µs per order over the primaries. */
async function ordersPerSecond(client: RedisClient, primaries: Redis[]): Promise<{ perSecond: number; usPerOrder: number }> {
  const engine = new Engine(client);
  const tenants = await spreadTenants(client, `bench${++run}t`);
  for (const tenant of tenants) {
    await engine.workflows.ensureOrderMachine(tenant);
    await engine.orders.restock(tenant, 'p', 1_000_000_000);
    await engine.orders.deposit(tenant, 'u', 1_000_000_000_000);
  }
  await Promise.all(primaries.map((p) => p.config('RESETSTAT')));
  let placed = 0;
  let n = 0;
  const started = performance.now();
  const until = started + DURATION_MS;
  await Promise.all(
    tenants.flatMap((tenant) =>
      Array.from({ length: CALLERS_PER_TENANT }, async () => {
        while (performance.now() < until) {
          await engine.orders.processOrder(tenant, { orderId: `o${n++}`, userId: 'u', productId: 'p', quantity: 1, unitPriceCents: 1 });
          placed++;
        }
      }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  const stats = await Promise.all(primaries.map(fcallStats));
  const calls = stats.reduce((a, s) => a + s.calls, 0);
  const usec = stats.reduce((a, s) => a + s.usec, 0);
  return { perSecond: placed / seconds, usPerOrder: usec / Math.max(calls, 1) };
}

/**
 * Redis µs of one order when it runs alone: one caller, 5 batches of 500 orders between CONFIG
 * RESETSTAT and INFO commandstats, the cheapest batch (a descheduled Redis only ever adds time).
 */
async function costPerOrder(client: RedisClient, primary: Redis, tenant: string): Promise<number> {
  const engine = new Engine(client);
  await engine.workflows.ensureOrderMachine(tenant);
  await engine.orders.restock(tenant, 'p', 1_000_000_000);
  await engine.orders.deposit(tenant, 'u', 1_000_000_000_000);
  let cheapest = Infinity;
  for (let batch = 0; batch < 5; batch++) {
    await primary.config('RESETSTAT');
    for (let i = 0; i < 500; i++) await engine.orders.processOrder(tenant, { orderId: `c${batch}-${i}`, userId: 'u', productId: 'p', quantity: 1, unitPriceCents: 1 });
    const { calls, usec } = await fcallStats(primary);
    cheapest = Math.min(cheapest, usec / calls);
  }
  return cheapest;
}

async function cpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  return Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)![1]);
}

async function busMessages(redis: Redis): Promise<number> {
  const info = String(await redis.cluster('INFO'));
  return Number(/cluster_stats_messages_publish_sent:(\d+)/.exec(info)?.[1] ?? 0) + Number(/cluster_stats_messages_publishshard_sent:(\d+)/.exec(info)?.[1] ?? 0);
}

/** PUBLISH or SPUBLISH of PUBSUB_MESSAGES on the owner of a tenant channel's slot, received by the subscribers. */
async function publishCost(cluster: Cluster, ports: number[], sharded: boolean) {
  const channel = tenantKeys('benchpubsub').ordersChannel();
  const ownerKey = ownerOf(cluster, keySlot(channel))!;
  const ownerPort = Number(ownerKey.split(':')[1]);
  const others = ports.filter((p) => p !== ownerPort).map(node);
  const subscribers = (sharded ? [ownerPort] : ports).map(node);
  let received = 0;
  const expected = PUBSUB_MESSAGES * subscribers.length;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  for (const s of subscribers) {
    s.on(sharded ? 'smessage' : 'message', () => {
      if (++received === expected) done();
    });
    await (sharded ? s.ssubscribe(channel) : s.subscribe(channel));
  }
  const publisher = node(ownerPort);
  const message = JSON.stringify({ eventId: '1700000000000-0', type: 'ORDER_CONFIRMED', orderId: 'o-12345678', userId: 'u-1', state: 'pending', totalCents: 1234 });
  const [cpuBefore, busBefore] = [await Promise.all(others.map(cpuSeconds)), await busMessages(publisher)];
  const started = performance.now();
  for (let sent = 0; sent < PUBSUB_MESSAGES; sent += 500) {
    const batch = publisher.pipeline();
    for (let i = 0; i < 500; i++) batch.call(sharded ? 'SPUBLISH' : 'PUBLISH', channel, message);
    await batch.exec();
  }
  await all;
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = await Promise.all(others.map(cpuSeconds));
  const bus = (await busMessages(publisher)) - busBefore;
  const othersUs = cpuAfter.reduce((a, c, i) => a + c - cpuBefore[i]!, 0) * 1e6;
  for (const c of [...subscribers, ...others, publisher]) c.disconnect();
  return { perSecond: PUBSUB_MESSAGES / seconds, othersUsPerMessage: othersUs / PUBSUB_MESSAGES, busPerMessage: bus / PUBSUB_MESSAGES };
}

/** used_memory growth per item of `make`, on a Redis of its own. */
async function memoryPer(redis: Redis, make: (i: number) => Promise<unknown>): Promise<number> {
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const before = await usedMemory();
  for (let i = 0; i < MEMORY_SAMPLE; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => make(i + j)));
  return ((await usedMemory()) - before) / MEMORY_SAMPLE;
}

async function main(): Promise<void> {
  progress(`bench:cluster: starting a redis-server and a 3-primary cluster (${ROUNDS} round(s) of ${DURATION_MS} ms)`);
  const single = await startPrivateRedis();
  const cluster = await startTestCluster(3).catch(async (err) => {
    await single.stop();
    throw err;
  });
  const stopAll = async () => {
    await Promise.all([single.stop(), cluster.stop()]);
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    const one = connectRedis(single.url, { maxRetriesPerRequest: 1 }) as Redis;
    const many = connectRedis(clusterTarget(readConfig({ REDIS_CLUSTER_NODES: cluster.seeds() }).redisCluster!), { maxRetriesPerRequest: 1 }) as Cluster;
    await loadFunctions(one);
    await loadFunctions(many);
    const primaries = cluster.nodes.map((n) => node(n.port));

    const rows: Record<'one' | 'cluster', { perSecond: number; usPerOrder: number }[]> = { one: [], cluster: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order: ('one' | 'cluster')[] = round % 2 === 0 ? ['one', 'cluster'] : ['cluster', 'one'];
      for (const which of order) {
        const result = which === 'one' ? await ordersPerSecond(one, [one]) : await ordersPerSecond(many, primaries);
        rows[which].push(result);
        progress(`  round ${round + 1}: ${which}: ${result.perSecond.toFixed(0)} orders/s, ${result.usPerOrder.toFixed(1)} µs of Redis per order`);
      }
    }
    const summary = (which: 'one' | 'cluster') => ({
      perSecond: median(rows[which].map((r) => r.perSecond)),
      usPerOrder: median(rows[which].map((r) => r.usPerOrder)),
    });
    const [a, b] = [summary('one'), summary('cluster')];
    progress('  Redis µs per order, alone');
    const aloneOne = await costPerOrder(one, one, 'alone');
    const clusterTenants = await spreadTenants(many, 'alone');
    const aloneCluster = await Promise.all(
      clusterTenants.map(async (tenant) => {
        const owner = ownerOf(many, keySlot(tenantKeys(tenant).events()))!;
        return costPerOrder(many, primaries.find((p) => `${p.options.host}:${p.options.port}` === owner)!, tenant);
      }),
    );

    progress('  events: PUBLISH against SPUBLISH');
    const classic = await publishCost(many, cluster.nodes.map((n) => n.port), false);
    const sharded = await publishCost(many, cluster.nodes.map((n) => n.port), true);

    progress('  memory per order, workflow, transition');
    const engine = new Engine(one);
    await engine.workflows.ensureOrderMachine('mem');
    await engine.orders.restock('mem', 'p', 1_000_000_000);
    await engine.orders.deposit('mem', 'u', 1_000_000_000_000);
    await engine.workflows.defineMachine('mem', { name: 'door', initialState: 'open', states: ['open', 'shut'], transitions: [{ from: 'open', to: ['shut'] }, { from: 'shut', to: ['open'] }] });
    const perOrder = await memoryPer(one, (i) => engine.orders.processOrder('mem', { orderId: `o${i}`, userId: 'u', productId: 'p', quantity: 1, unitPriceCents: 100 }));
    const perWorkflow = await memoryPer(one, (i) => engine.workflows.start('mem', { id: `w${i}`, machine: 'door' }));
    const perTransition = await memoryPer(one, (i) => engine.workflows.transition('mem', { id: `w${i}`, to: 'shut' }));
    const stream = tenantKeys('mem').events();
    const perEvent = Number(await one.call('MEMORY', 'USAGE', stream, 'SAMPLES', '0')) / (await one.xlen(stream));

    const cpus = os.cpus();
    console.log(`\`npm run bench:cluster${argv.length ? ` -- ${argv.join(' ')}` : ''}\` on ${cpus.length} × ${cpus[0]?.model ?? 'CPU'}, Redis ${(/redis_version:(\S+)/.exec(await one.info('server')) ?? [])[1]}, ${new Date().toISOString().slice(0, 10)}\n`);
    const aloneWorst = Math.max(...aloneCluster);
    console.log(`| orders across ${TENANTS} tenants (${CALLERS_PER_TENANT} callers each, engine in-process) | orders/s | Redis µs per order under that load | Redis µs per order alone | one primary's ceiling (1e6 / µs alone) |`);
    console.log('| --- | ---: | ---: | ---: | ---: |');
    console.log(`| one Redis | ${a.perSecond.toFixed(0)} | ${a.usPerOrder.toFixed(1)} | ${aloneOne.toFixed(1)} | ${(1e6 / aloneOne).toFixed(0)} orders/s |`);
    console.log(`| cluster, 3 tenants on 3 primaries | ${b.perSecond.toFixed(0)} | ${b.usPerOrder.toFixed(1)} | ${aloneCluster.map((u) => u.toFixed(1)).join(' / ')} | ${(1e6 / aloneWorst).toFixed(0)} orders/s per primary |`);
    console.log(`\n| events, ${PUBSUB_MESSAGES} messages on one tenant channel, 3 primaries | messages/s | CPU µs per message on the 2 other primaries | cluster bus messages per message |`);
    console.log('| --- | ---: | ---: | ---: |');
    console.log(`| PUBLISH (subscribers on all 3 primaries) | ${classic.perSecond.toFixed(0)} | ${classic.othersUsPerMessage.toFixed(2)} | ${classic.busPerMessage.toFixed(2)} |`);
    console.log(`| SPUBLISH (subscriber on the slot's primary) | ${sharded.perSecond.toFixed(0)} | ${sharded.othersUsPerMessage.toFixed(2)} | ${sharded.busPerMessage.toFixed(2)} |`);
    console.log(`\n| Redis memory (used_memory growth over ${MEMORY_SAMPLE}) | bytes |`);
    console.log('| --- | ---: |');
    console.log(`| per order (workflow, history, indexes, account index, its event) | ${perOrder.toFixed(0)} |`);
    console.log(`| per workflow started (with its event) | ${perWorkflow.toFixed(0)} |`);
    console.log(`| per transition (history entry, its event) | ${perTransition.toFixed(0)} |`);
    console.log(`| per event in the stream (MEMORY USAGE / XLEN) | ${perEvent.toFixed(0)} |`);
    for (const c of [one, many, ...primaries]) c.disconnect();
  } finally {
    await stopAll();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cluster failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
