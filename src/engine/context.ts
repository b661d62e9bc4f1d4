/**
 * What every engine shares: the Redis connection, settings, and the routing cache.
 *
 * Routing: a function that writes a workflow must receive every key it touches, and some of those
 * keys depend on the workflow (its machine; for an order, its product and account). Those fields
 * never change after creation, so they are read once (wf_route) and cached. The Lua side checks them
 * against what is stored and answers STALE_KEYS if they disagree (say the data was flushed and the id
 * reused); withWorkflowRoute then re-reads and retries once.
 */
import { isCluster, type RedisClient } from '../redis/client.js';
import { tenantKeys, type TenantKeys } from '../redis/keys.js';
import { fcallReadOnly } from '../redis/replies.js';
import { EngineError } from '../core/errors.js';

export interface EngineOptions {
  /** Approximate MAXLEN of each tenant's event stream. */
  streamMaxLen: number;
  /** How long a requestId (depositFunds, restockProduct) is remembered, in ms (IDEMPOTENCY_TTL). */
  idempotencyTtlMs: number;
  /** Settled schedule entries and saga records expire after this many ms (RETENTION_SETTLED). */
  retentionSettledMs: number;
  /** Terminal workflows leave the listings and expire after this many ms; 0: kept (RETENTION_TERMINAL). */
  retentionTerminalMs: number;
}

export const DEFAULT_ENGINE_OPTIONS: EngineOptions = {
  streamMaxLen: 100_000,
  idempotencyTtlMs: 24 * 3_600_000,
  retentionSettledMs: 7 * 24 * 3_600_000,
  retentionTerminalMs: 0,
};

export interface WorkflowRoute {
  machine: string;
  kind: 'workflow' | 'order';
  /** For orders: the account and product a refund touches; '' otherwise. */
  userId: string;
  productId: string;
}

const ROUTE_CACHE_LIMIT = 50_000;
const TENANT_CACHE_LIMIT = 10_000;

export class EngineContext {
  private readonly routes = new Map<string, WorkflowRoute>();
  private readonly tenantKeyBuilders = new Map<string, TenantKeys>();
  /** On a cluster the functions SPUBLISH (lua/include/core.lua emit_event; README, "Events on a cluster"). */
  private readonly channelArg: (channel: string) => string;

  constructor(
    readonly redis: RedisClient,
    readonly options: EngineOptions = DEFAULT_ENGINE_OPTIONS,
  ) {
    this.channelArg = isCluster(redis) ? (channel) => `sharded:${channel}` : (channel) => channel;
  }

  /** The key builder of a tenant; built once per tenant (it validates the tenant id). */
  keys(tenant: string): TenantKeys {
    let k = this.tenantKeyBuilders.get(tenant);
    if (!k) {
      k = tenantKeys(tenant);
      if (this.tenantKeyBuilders.size >= TENANT_CACHE_LIMIT) this.tenantKeyBuilders.clear();
      this.tenantKeyBuilders.set(tenant, k);
    }
    return k;
  }

  /** ARGV[1..4] of every function that writes a workflow (see lua/include/core.lua). */
  eventArgs(k: TenantKeys): (string | number)[] {
    return [this.channelArg(k.workflowChannel()), this.channelArg(k.ordersChannel()), this.options.streamMaxLen, this.options.retentionTerminalMs];
  }

  /** KEYS for a function writing this workflow, from its route. */
  workflowBlock(k: TenantKeys, id: string, route: WorkflowRoute): string[] {
    return k.workflowBlock(id, route.machine, route.kind === 'order' ? route : undefined);
  }

  rememberRoute(tenant: string, id: string, route: WorkflowRoute): void {
    if (this.routes.size >= ROUTE_CACHE_LIMIT) {
      const oldest = this.routes.keys().next().value;
      if (oldest !== undefined) this.routes.delete(oldest);
    }
    this.routes.set(`${tenant}\u0000${id}`, route);
  }

  async route(tenant: string, id: string, fresh = false): Promise<WorkflowRoute | null> {
    const cacheKey = `${tenant}\u0000${id}`;
    if (!fresh) {
      const cached = this.routes.get(cacheKey);
      if (cached) return cached;
    }
    const k = this.keys(tenant);
    const route = await fcallReadOnly<WorkflowRoute | null>(this.redis, 'wf_route', [k.workflow(id)], []);
    if (route) this.rememberRoute(tenant, id, route);
    else this.routes.delete(cacheKey);
    return route;
  }

  /** Runs `call` with the workflow's route; NOT_FOUND when there is no such workflow. */
  async withWorkflowRoute<T>(tenant: string, id: string, call: (route: WorkflowRoute) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const route = await this.route(tenant, id, attempt > 0);
      if (!route) throw new EngineError('NOT_FOUND', `workflow ${id} not found`);
      try {
        return await call(route);
      } catch (err) {
        if (err instanceof EngineError && err.code === 'STALE_KEYS' && attempt === 0) continue;
        throw err;
      }
    }
  }
}
