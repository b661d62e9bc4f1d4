/**
 * The per-request (HTTP) or per-connection (WebSocket) context. The tenant is decided here, once,
 * so that authentication can later set it in this one place; until then it is always `default`.
 */
import type { Engine } from '../engine/engine.js';
import type { TenantEvents } from '../events/tenant-events.js';

export const DEFAULT_TENANT = 'default';

export interface GraphQLContext {
  tenant: string;
  engine: Engine;
  /** The live event feeds (subscriptions). */
  events: TenantEvents;
}

export function createContext(engine: Engine, events: TenantEvents, tenant: string = DEFAULT_TENANT): GraphQLContext {
  return { tenant, engine, events };
}
