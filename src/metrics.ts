/**
 * Prometheus metrics (prom-client), served at GET /metrics. One registry per process: the Redis
 * Function timings are taken where every FCALL is made (src/redis/replies.ts), which knows no
 * server, and a process normally runs one server. Label values are bounded: function names and
 * error codes come from fixed sets, operation names are capped (see operationLabel), and no label
 * carries an id or a tenant.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export const redisFunctionDuration = new Histogram({
  name: 'atomflow_redis_function_duration_seconds',
  help: 'Latency of Redis Function calls (FCALL / FCALL_RO) as seen by the server, by function',
  labelNames: ['function'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const redisFunctionErrors = new Counter({
  name: 'atomflow_redis_function_errors_total',
  help: 'Redis Function calls that failed, by function and error code (UNEXPECTED: not an error reply of ours, e.g. connection lost)',
  labelNames: ['function', 'code'] as const,
  registers: [registry],
});

export const graphqlOperationDuration = new Histogram({
  name: 'atomflow_graphql_operation_duration_seconds',
  help: 'Duration of GraphQL queries and mutations over HTTP, by operation type and name',
  labelNames: ['type', 'name'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const graphqlErrors = new Counter({
  name: 'atomflow_graphql_errors_total',
  help: 'GraphQL errors returned to clients over HTTP, by extensions.code',
  labelNames: ['code'] as const,
  registers: [registry],
});

export const openSockets = new Gauge({
  name: 'atomflow_websocket_open_sockets',
  help: 'Open graphql-ws WebSocket connections',
  registers: [registry],
});

/** What a scrape reads from each running server's event relay (see addSubscriptionGauges). */
export interface SubscriptionGaugeSource {
  /** Live client subscriptions by event kind (`orders`, `workflows`); shared ones count each client. */
  activeSubscriptions(): Record<string, number>;
}
const subscriptionSources = new Set<SubscriptionGaugeSource>();

export const activeSubscriptions = new Gauge({
  name: 'atomflow_subscriptions_active',
  help: 'Live subscriptions (their Redis SUBSCRIBE is confirmed), by event kind',
  labelNames: ['kind'] as const,
  registers: [registry],
  collect() {
    const totals: Record<string, number> = { orders: 0, workflows: 0 };
    for (const source of subscriptionSources) {
      for (const [kind, count] of Object.entries(source.activeSubscriptions())) totals[kind] = (totals[kind] ?? 0) + count;
    }
    for (const [kind, count] of Object.entries(totals)) this.set({ kind }, count);
  },
});

/** Registers a server's relay for the subscription gauge; returns its removal. */
export function addSubscriptionGauges(source: SubscriptionGaugeSource): () => void {
  subscriptionSources.add(source);
  return () => subscriptionSources.delete(source);
}

export const eventsRelayed = new Counter({
  name: 'atomflow_events_relayed_total',
  help: 'Events passed on from Redis to this process (live or gap fill), by event kind',
  labelNames: ['kind'] as const,
  registers: [registry],
});

export const eventsDropped = new Counter({
  name: 'atomflow_events_dropped_total',
  help: 'Queued events discarded when a subscription fell too far behind and was ended (SUBSCRIPTION_LAGGING), by event kind',
  labelNames: ['kind'] as const,
  registers: [registry],
});

export const scheduledEntries = new Counter({
  name: 'atomflow_scheduler_entries_total',
  help: 'Scheduled transitions settled by the worker: applied (DONE), failed (FAILED), or error (the call itself failed; retried after the lease)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

// every labelled series exists from the start (at 0), so a scrape always shows it
for (const kind of ['workflows', 'orders']) {
  eventsRelayed.inc({ kind }, 0);
  eventsDropped.inc({ kind }, 0);
}
for (const outcome of ['applied', 'failed', 'error']) scheduledEntries.inc({ outcome }, 0);

/** What a scrape reads from Redis: filled by each running server (see addRedisGauges). */
export interface RedisGaugeSource {
  /** Seconds since the oldest due scheduled entry's runAt (0 when none is due). */
  schedulerLagSeconds(): Promise<number>;
  /** Entries in the event streams this server serves. */
  eventStreamLength(): Promise<number>;
}
const redisSources = new Set<RedisGaugeSource>();

async function sum(read: (s: RedisGaugeSource) => Promise<number>, max = false): Promise<number> {
  const values = await Promise.all([...redisSources].map((s) => read(s).catch(() => 0)));
  return values.reduce((a, b) => (max ? Math.max(a, b) : a + b), 0);
}

new Gauge({
  name: 'atomflow_scheduler_lag_seconds',
  help: "Now minus the oldest due scheduled entry's runAt (0 when nothing is due)",
  registers: [registry],
  async collect() {
    this.set(await sum((s) => s.schedulerLagSeconds(), true));
  },
});

new Gauge({
  name: 'atomflow_event_stream_length',
  help: 'Entries in the event stream (summed over the tenants this server serves)',
  registers: [registry],
  async collect() {
    this.set(await sum((s) => s.eventStreamLength()));
  },
});

/** Registers a source for the Redis-read gauges; returns its removal. */
export function addRedisGauges(source: RedisGaugeSource): () => void {
  redisSources.add(source);
  return () => redisSources.delete(source);
}

/** Channel names carry the tenant; the label is only the kind of event. */
export function eventKind(channel: string): string {
  if (channel.endsWith(':orders')) return 'orders';
  if (channel.endsWith(':workflows')) return 'workflows';
  return 'other';
}

const MAX_OPERATION_NAMES = 200;
const seenOperationNames = new Set<string>();

/**
 * Operation names are chosen by clients: a label value only for well-formed names, and only the
 * first MAX_OPERATION_NAMES distinct ones; the rest count as `other`. No name: `anonymous`.
 */
export function operationLabel(name: string | null | undefined): string {
  if (!name) return 'anonymous';
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) return 'other';
  if (seenOperationNames.has(name)) return name;
  if (seenOperationNames.size >= MAX_OPERATION_NAMES) return 'other';
  seenOperationNames.add(name);
  return name;
}

/**
 * Reads the scheduler lag and event stream length of `tenants` from Redis at scrape time (ZRANGE of
 * the due set's first entry, XLEN): key names come from the caller (src/redis/keys.ts).
 */
export function redisGauges(
  redis: { zrange(key: string, start: number, stop: number, withScores: 'WITHSCORES'): Promise<string[]>; xlen(key: string): Promise<number> },
  keysOf: (tenant: string) => { events(): string; scheduleDue(): string },
  /** The tenants this server has served (read at each scrape). */
  tenants: () => Iterable<string>,
): RedisGaugeSource {
  return {
    async schedulerLagSeconds() {
      let lag = 0;
      for (const tenant of tenants()) {
        const [, score] = await redis.zrange(keysOf(tenant).scheduleDue(), 0, 0, 'WITHSCORES');
        if (score !== undefined) lag = Math.max(lag, (Date.now() - Number(score)) / 1000);
      }
      return lag;
    },
    async eventStreamLength() {
      const lengths = await Promise.all([...tenants()].map((t) => redis.xlen(keysOf(t).events())));
      return lengths.reduce((a, b) => a + b, 0);
    },
  };
}
