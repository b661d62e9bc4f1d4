/**
 * The Redis cost per call of atomflow's functions against minimal seed-style ones (issue 9, target 2),
 * measured in one run: `npm run bench` runs it as its part 4, and
 * `tsx scripts/bench-redis-cost.ts [--quick]` runs it alone against a private redis-server (a minute
 * instead of several, for working on lua/).
 *
 * A library of the bench's own (atomflow_bench, removed at the end) holds a minimal seed-style
 * process_order, a minimal compare-and-set transition and profiling variants; each function runs alone
 * between CONFIG RESETSTAT and INFO commandstats, so usec_per_call of FCALL is that function's (and
 * the commands it ran are listed). Memory per order: MEMORY USAGE of one order's own keys, and
 * used_memory growth per order (indexes, list, stream included).
 */
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { Engine } from '../src/app/engine.js';
import { loadFunctions } from '../src/redis/functions.js';
import { tenantKeys } from '../src/redis/keys.js';
import { startPrivateRedis } from '../test/setup/private-redis.js';

/** The target ratio against the minimal function. */
export const COST_TARGET = 2;
const COST_BATCHES = 5;
/** bench_order_shape runs: [indexes written (of 4), events appended to the stream (of 2)]. */
const ORDER_SHAPES: [number, number][] = [
  [4, 2],
  [2, 1],
  [0, 1],
];
const MACHINE = 'pingpong';
/** The a <-> b machine the bench's transitions use (scripts/bench.ts too). */
export const PINGPONG = {
  name: MACHINE,
  initialState: 'a',
  states: ['a', 'b'],
  transitions: [
    { from: 'a', to: ['b'] },
    { from: 'b', to: ['a'] },
  ],
};
const INITIAL_STOCK = 1_000_000_000;
const INITIAL_BALANCE = 1_000_000_000_000;
const other = (s: 'a' | 'b') => (s === 'a' ? 'b' : 'a');

export interface CostOptions {
  /** Calls per function, in COST_BATCHES batches. */
  calls: number;
  progress: (line: string) => void;
}

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
-- Profiling variants (read-only): the FCALL floor; decoding the order machine's JSON (KEYS[1] the
-- machine hash) and that plus encoding a workflow reply with cjson, as order_process did before
-- machines were stored compiled and replies concatenated.
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
 * Runs `call` `opts.calls` times, one after the other (usec_per_call is time inside Redis, which
 * concurrency does not change), alone between CONFIG RESETSTAT and INFO commandstats.
 */
async function costOf(redis: Redis, opts: CostOptions, name: string, call: (i: number) => Promise<unknown>): Promise<Cost> {
  // In batches, keeping the cheapest: on a shared machine Redis is sometimes descheduled in the
  // middle of a call, which only ever adds time.
  let best: Cost | null = null;
  const batch = opts.calls / COST_BATCHES;
  for (let b = 0; b < COST_BATCHES; b++) {
    const cost = await costOfBatch(redis, name, b * batch, batch, call);
    if (!best || cost.usecPerCall < best.usecPerCall) best = cost;
  }
  opts.progress(
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

export interface CostReport {
  costs: Map<string, Cost>;
  orderBytesOwnKeys: number;
  orderBytesGrowth: number;
  minimalBytesOwnKeys: number;
  minimalBytesGrowth: number;
}

export async function redisCosts(redis: Redis, opts: CostOptions): Promise<CostReport> {
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
    await engine.workflows.defineMachine(tenant, PINGPONG);
    const flows = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const wf = await engine.workflows.start(tenant, { id: `cost-wf-${i}`, machine: MACHINE });
        return { id: wf.id, state: 'a' as 'a' | 'b' };
      }),
    );
    let before = await usedMemory(redis);
    add(
      await costOf(redis, opts, 'order_process', (i) =>
        engine.orders.processOrder(tenant, { orderId: `cost-${i}`, userId: 'u', productId: 'p', quantity: 1, unitPriceCents: 100 }),
      ),
    );
    const orderBytesGrowth = ((await usedMemory(redis)) - before) / opts.calls;
    const orderBytesOwnKeys = await memoryUsage(redis, [k.workflow('cost-0'), k.workflowHistory('cost-0')]);
    add(
      await costOf(redis, opts, 'wf_transition', async (i) => {
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
      await costOf(redis, opts, 'bench_process_order', (i) =>
        redis.fcall('bench_process_order', 4, m.productStock('p'), m.accountBalance('u'), m.workflow(`min-${i}`), m.accountOrders('u'), m.ordersChannel(), `min-${i}`, 'u', 'p', 1, 100),
      ),
    );
    const minimalBytesGrowth = ((await usedMemory(redis)) - before) / opts.calls;
    const minimalBytesOwnKeys = await memoryUsage(redis, [m.workflow('min-0')]);
    const casFlows = Array.from({ length: 16 }, (_, i) => ({ key: m.workflow(`cas-${i}`), state: 'a' as 'a' | 'b' }));
    for (const f of casFlows) await redis.hset(f.key, 'state', 'a', 'version', 1);
    add(
      await costOf(redis, opts, 'bench_cas_transition', async (i) => {
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
        await costOf(redis, opts, `bench_transition_shape ${indexes}`, async (i) => {
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
    add(await costOf(redis, opts, 'bench_noop', () => redis.fcall_ro('bench_noop', 0)));
    add(await costOf(redis, opts, 'bench_machine_decode', () => redis.fcall_ro('bench_machine_decode', 1, k.machine('order'))));
    add(await costOf(redis, opts, 'bench_reply_encode', () => redis.fcall_ro('bench_reply_encode', 1, k.machine('order'))));
    add(await costOf(redis, opts, 'bench_call_overhead', () => redis.fcall_ro('bench_call_overhead', 1, k.machine('order'))));
    const s = tenantKeys('bench-shape');
    await redis.set(s.productStock('p'), INITIAL_STOCK);
    await redis.set(s.accountBalance('u'), INITIAL_BALANCE);
    for (const [indexes, streams] of ORDER_SHAPES) {
      const prefix = `shape${indexes}${streams}`;
      add(
        await costOf(redis, opts, `bench_order_shape ${indexes} ${streams}`, (i) =>
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

function fmt(n: number | undefined, digits: number): string {
  return n !== undefined && Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '';
}

/** The bench table's rows of this part. */
export function costRows(cost: CostReport): { name: string; result: string; target?: string }[] {
  const rows: { name: string; result: string; target?: string }[] = [];
  const c = (name: string) => cost.costs.get(name)!;
  for (const [real, minimal] of [
    ['order_process', 'bench_process_order'],
    ['wf_transition', 'bench_cas_transition'],
  ] as const) {
    const ratio = c(real).usecPerCall / c(minimal).usecPerCall;
    rows.push({
      name: `Redis µs per call: ${real} vs minimal ${minimal}`,
      result: `${c(real).usecPerCall.toFixed(1)} vs ${c(minimal).usecPerCall.toFixed(1)} µs: ${ratio.toFixed(1)}x`,
      target: ratio <= COST_TARGET ? `✓ ≤ ${COST_TARGET}x` : `✗ > ${COST_TARGET}x`,
    });
  }
  const commandsOf = (name: string) => c(name).inner.reduce((s, x) => s + x.usec, 0);
  rows.push({
    name: 'Redis µs per call, profile of order_process',
    result:
      `commands ${commandsOf('order_process').toFixed(1)} (the rest, Lua and calling Redis from it, ${(c('order_process').usecPerCall - commandsOf('order_process')).toFixed(1)}); ` +
      `FCALL floor ${c('bench_noop').usecPerCall.toFixed(1)}; JSON it no longer does: decoding the machine ${(c('bench_machine_decode').usecPerCall - c('bench_noop').usecPerCall).toFixed(1)}, ` +
      `encoding the reply ${(c('bench_reply_encode').usecPerCall - c('bench_machine_decode').usecPerCall).toFixed(1)}`,
  });
  const minimalOrder = c('bench_process_order').usecPerCall;
  const shape = (indexes: number, streams: number) => {
    const u = c(`bench_order_shape ${indexes} ${streams}`).usecPerCall;
    return `${u.toFixed(1)} µs (${(u / minimalOrder).toFixed(1)}x)`;
  };
  const perRedisCall = (c('bench_call_overhead').usecPerCall - c('bench_noop').usecPerCall) / 20;
  rows.push({
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
  rows.push({
    name: 'Redis µs per call, wf_transition reshaped (bench_transition_shape)',
    result: `history + event + 2 index moves, no JSON: ${tshape(2)}; history + event, no index: ${tshape(0)}`,
    target: [2, 0].map((i) => (c(`bench_transition_shape ${i}`).usecPerCall <= COST_TARGET * cas ? '✓' : '✗')).join(' '),
  });
  rows.push({
    name: 'Redis bytes per order: order_process vs minimal',
    result:
      `own keys ${fmt(cost.orderBytesOwnKeys, 0)} vs ${fmt(cost.minimalBytesOwnKeys, 0)}; ` +
      `used_memory growth ${fmt(cost.orderBytesGrowth, 0)} vs ${fmt(cost.minimalBytesGrowth, 0)}`,
  });
  return rows;
}

/** The lines under the table: each function's µs and the commands it ran. */
export function costDetails(cost: CostReport, calls: number): string[] {
  const c = (name: string) => cost.costs.get(name)!;
  const out = [`Redis: usec_per_call of FCALL (INFO commandstats), ${calls} calls of one function at a time in ${COST_BATCHES} batches, the cheapest batch.`];
  for (const name of ['order_process', 'bench_process_order', ...ORDER_SHAPES.map(([i, st]) => `bench_order_shape ${i} ${st}`), 'wf_transition', 'bench_cas_transition', 'bench_transition_shape 2', 'bench_transition_shape 0']) {
    out.push(`  ${name}: ${c(name).usecPerCall.toFixed(1)} µs, commands: ${c(name).inner.map((x) => `${fmt(x.perCall, 0)} ${x.command.toUpperCase()} ${x.usec.toFixed(1)} µs`).join(', ')}`);
  }
  return out;
}

/** Run alone: a private redis-server, the libraries of lua/, this part only. */
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.some((a) => a !== '--quick')) {
    process.stderr.write('usage: tsx scripts/bench-redis-cost.ts [--quick]\n');
    process.exit(2);
  }
  const calls = argv.includes('--quick') ? 1000 : 5000;
  const privateRedis = await startPrivateRedis();
  const redis = new Redis(privateRedis.url, { maxRetriesPerRequest: 1 });
  try {
    await loadFunctions(redis);
    const cost = await redisCosts(redis, { calls, progress: (line) => process.stderr.write(`${line}\n`) });
    const lines = [`command: tsx scripts/bench-redis-cost.ts${argv.length ? ` ${argv.join(' ')}` : ''}`, ''];
    for (const row of costRows(cost)) lines.push(`${row.name}: ${row.result}${row.target ? ` ${row.target}` : ''}`);
    lines.push('', ...costDetails(cost, calls));
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    redis.disconnect();
    await privateRedis.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench-redis-cost failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
