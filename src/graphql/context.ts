/**
 * The per-request (HTTP) or per-connection (WebSocket) context. The tenant is decided here, once,
 * so that authentication can later set it in this one place; until then it is always `default`.
 */
import type { Engine } from '../engine/engine.js';

export const DEFAULT_TENANT = 'default';

export interface GraphQLContext {
  tenant: string;
  engine: Engine;
}

export function createContext(engine: Engine, tenant: string = DEFAULT_TENANT): GraphQLContext {
  return { tenant, engine };
}
