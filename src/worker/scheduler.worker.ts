/**
 * The scheduler worker: every tick, for each tenant, claims the due scheduled transitions (with a
 * lease) and applies each one. It runs inside the server by default and as a separate process
 * (`npm run worker`); several workers may run against one Redis: claims hand each due entry to one
 * of them, and applying is atomic and does nothing for an entry already settled, so every entry
 * takes effect exactly once even when a worker dies between claim and apply (its lease runs out and
 * another worker claims the entry again).
 */
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../redis/client.js';
import type { SchedulerEngine } from '../scheduler/scheduler.engine.js';
import { acrossTenants } from '../redis/keys.js';
import { assertId, assertInt, MAX_INT32 } from '../core/validation.js';
import { MAX_CLAIM, type ScheduledTransition } from '../scheduler/scheduler.engine.js';
import { redisTrouble } from '../redis/replies.js';
import type { Log } from '../log.js';
import { scheduledEntries } from '../metrics.js';

/** SCAN calls per tick while looking for tenants with due entries, and keys each call visits. */
const SCAN_CALLS_PER_TICK = 10;
const SCAN_COUNT = 1000;

export interface SchedulerWorkerOptions {
  /**
   * Only these tenants (WORKER_TENANTS). Without it the worker finds the tenants that have due
   * entries by itself, scanning `redis` for their due sets; with neither, ['default'].
   */
  tenants?: string[] | null;
  /** Where to scan for tenants with due entries when `tenants` is not given (a cluster: every primary). */
  redis?: Pick<Redis, 'scan'> | RedisClient;
  /** Pause between the end of one tick and the start of the next, in ms. Default 250. */
  tickMs?: number;
  /** How long a claim keeps an entry from other workers, in ms. Default 30000. */
  leaseMs?: number;
  /** Entries claimed per call. Default 100. */
  batchSize?: number;
  /** Applying an entry that fails without an atomflow error code this many times makes it FAILED. Default 5. */
  maxAttempts?: number;
  /**
   * Where each settled entry (one line each) and each failure is reported; the loop goes on after
   * logging. Default: failures to console.error.
   */
  log?: Log;
}

export class SchedulerWorker {
  /** The tenant filter; null when the worker finds tenants itself. */
  readonly tenants: readonly string[] | null;
  readonly tickMs: number;
  readonly leaseMs: number;
  readonly batchSize: number;
  readonly maxAttempts: number;
  private readonly log: Log;
  private running = false;
  /** Set by stop(): a tick in flight finishes its current batch and claims no more. */
  private stopping = false;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  /** Why Redis cannot serve, while it cannot: logged once when it goes, once when it returns. */
  private redisDown: string | null = null;

  private readonly redis: Pick<Redis, 'scan'> | RedisClient | null;
  /** Tenants seen with a due set in the last full scan, and in the scan under way. */
  private known = new Set<string>();
  private scanning = new Set<string>();
  private scanCursor = '0';
  /** The nodes the scan under way goes through one after the other (one Redis: itself), and which one it is on. */
  private scanNodes: Pick<Redis, 'scan'>[] = [];
  private scanNode = 0;

  constructor(
    private readonly engine: { readonly scheduler: Pick<SchedulerEngine, 'claimDue' | 'apply'> },
    options: SchedulerWorkerOptions = {},
  ) {
    this.redis = options.tenants ? null : (options.redis ?? null);
    this.tenants = options.tenants || !this.redis ? (options.tenants ?? ['default']).map((t) => assertId(t, 'tenant')) : null;
    this.tickMs = assertInt(options.tickMs ?? 250, 'tickMs', 1, MAX_INT32);
    this.leaseMs = assertInt(options.leaseMs ?? 30_000, 'leaseMs', 1, MAX_INT32);
    this.batchSize = assertInt(options.batchSize ?? 100, 'batchSize', 1, MAX_CLAIM);
    this.maxAttempts = assertInt(options.maxAttempts ?? 5, 'maxAttempts', 1, 1000);
    // without a log, only failures reach stderr (not one line per settled entry)
    this.log = options.log ?? ((line, fields) => (!fields || fields.level === 'error' || fields.err ? console.error(line) : undefined));
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts ticking: the first tick runs at once, each next one tickMs after the previous ended. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = false;
    // a tick still finishing after stop() schedules the next one itself
    if (!this.inFlight && !this.timer) this.schedule(0);
  }

  /** Stops ticking; resolves once the tick in flight (if any) has finished. Leaves no timer. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    await this.inFlight;
    if (!this.running) this.stopping = false;
  }

  /**
   * One pass: for each tenant, claims due entries batch by batch and applies them. Returns how many
   * entries this pass claimed and applied (settled as DONE or FAILED, or found already settled).
   * An entry whose apply fails is logged and left to its lease; a failed attempt that Redis answered
   * is counted, and after maxAttempts the entry is FAILED. While Redis is unreachable, loading or out
   * of memory the worker logs that once, and once more when Redis answers again.
   */
  async tick(): Promise<number> {
    let applied = 0;
    for (const tenant of this.tenants ?? (await this.dueTenants())) {
      if (this.stopping) break;
      try {
        for (;;) {
          const ids = await this.engine.scheduler.claimDue(tenant, { limit: this.batchSize, leaseMs: this.leaseMs });
          this.redisAnswered();
          const results = await Promise.allSettled(
            ids.map((id) => this.engine.scheduler.apply(tenant, id, { maxAttempts: this.maxAttempts })),
          );
          results.forEach((r, i) => {
            if (r.status === 'rejected') {
              scheduledEntries.inc({ outcome: 'error' });
              if (!this.redisFailed(r.reason)) {
                this.log(`scheduler: applying ${tenant}/${ids[i]} failed: ${describe(r.reason)}`, { level: 'error', tenant, entryId: ids[i] });
              }
            } else if (r.value.status === 'PENDING') {
              // a failed attempt, counted; claimable again when its lease runs out
              scheduledEntries.inc({ outcome: 'error' });
              this.log(`scheduler: attempt ${r.value.attempts} of ${this.maxAttempts} to apply ${tenant}/${ids[i]} failed: ${r.value.error}`, {
                level: 'error',
                tenant,
                entryId: ids[i],
              });
            } else {
              applied++;
              this.settled(tenant, r.value);
            }
          });
          if (ids.length < this.batchSize || this.stopping) break;
        }
      } catch (err) {
        if (!this.redisFailed(err)) this.log(`scheduler: claiming due entries of tenant ${tenant} failed: ${describe(err)}`, { level: 'error', tenant });
      }
    }
    return applied;
  }

  /** Redis trouble (unreachable, loading, out of memory): one log line per outage, not per tick. */
  private redisFailed(err: unknown): boolean {
    const trouble = redisTrouble(err);
    if (!trouble) return false;
    if (this.redisDown === null) this.log(`scheduler: ${trouble.replace(/; retry later$/, '')}; waiting for Redis (due entries are applied once it is back)`);
    this.redisDown = trouble;
    return true;
  }

  private redisAnswered(): void {
    if (this.redisDown === null) return;
    this.redisDown = null;
    this.log('scheduler: Redis is back; applying due entries again');
  }

  /** One log line and one count per entry the worker settled (DONE: applied; FAILED: refused). */
  private settled(tenant: string, entry: ScheduledTransition): void {
    const failed = entry.status === 'FAILED';
    scheduledEntries.inc({ outcome: failed ? 'failed' : 'applied' });
    const fields = {
      level: failed ? ('warn' as const) : ('info' as const),
      tenant,
      entryId: entry.id,
      workflowId: entry.workflowId,
      to: entry.to,
      status: entry.status,
      runAt: entry.runAt.toISOString(),
      lagMs: entry.executedAt ? entry.executedAt.getTime() - entry.runAt.getTime() : null,
      ...(failed ? { errorCode: entry.error?.split(' ')[0] ?? null, error: entry.error } : {}),
    };
    this.log(failed ? `scheduled transition ${entry.id} failed: ${entry.error}` : `scheduled transition ${entry.id} applied`, fields);
  }

  /**
   * Tenants that have a due set, found by SCAN over the due-set key pattern (src/redis/keys.ts). A
   * tick runs at most SCAN_CALLS_PER_TICK calls and goes on from there at the next tick, so one tick
   * stays cheap however large the keyspace; tenants found stay known until a full pass misses them.
   * On a cluster a pass scans every primary in turn (each holds the tenants of its slots).
   */
  private async dueTenants(): Promise<string[]> {
    const due = acrossTenants((k) => k.scheduleDue());
    try {
      for (let call = 0; call < SCAN_CALLS_PER_TICK; call++) {
        if (this.scanNode >= this.scanNodes.length) {
          const redis = this.redis!;
          this.scanNodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
          this.scanNode = 0;
        }
        const [next, keys] = await this.scanNodes[this.scanNode]!.scan(this.scanCursor, 'MATCH', due.pattern, 'COUNT', SCAN_COUNT);
        for (const key of keys) {
          const tenant = due.tenantOf(key);
          if (tenant) this.scanning.add(tenant);
        }
        this.scanCursor = next;
        if (next !== '0') continue;
        this.scanNode++;
        if (this.scanNode < this.scanNodes.length) continue;
        this.known = this.scanning;
        this.scanning = new Set();
        break;
      }
    } catch (err) {
      if (this.redis instanceof Cluster) {
        // a node gone meanwhile (failover, resharding): the next tick starts a fresh pass
        this.scanNode = this.scanNodes.length;
        this.scanCursor = '0';
      }
      this.log(`scheduler: looking for tenants with due entries failed: ${describe(err)}`);
    }
    return [...new Set([...this.known, ...this.scanning])];
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.inFlight = this.tick()
        .then(
          () => undefined,
          (err: unknown) => this.log(`scheduler: tick failed: ${describe(err)}`, { err }),
        )
        .finally(() => {
          this.inFlight = null;
          if (this.running && !this.timer) this.schedule(this.tickMs);
        });
    }, delay);
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}
