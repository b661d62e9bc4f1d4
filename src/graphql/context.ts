/**
 * The per-request (HTTP) or per-connection (WebSocket) context, made here and only here. The tenant
 * comes from the verified token alone (src/auth/tokens.ts) and selects every key, channel and stream
 * a request touches; no argument can name another tenant. What the principal may do is decided by
 * src/auth/policy.ts.
 */
import { GraphQLError } from 'graphql';
import type { Engine } from '../engine/engine.js';
import type { TenantEvents } from '../events/tenant-events.js';
import { AuthenticationError, type Authenticator, type Principal } from '../auth/tokens.js';

export const DEFAULT_TENANT = 'default';

export interface GraphQLContext {
  tenant: string;
  engine: Engine;
  principal: Principal;
  /** The live event feeds (subscriptions). */
  events: TenantEvents;
}

export function createContext(engine: Engine, events: TenantEvents, principal: Principal): GraphQLContext {
  return { tenant: principal.tenant, engine, principal, events };
}

/** UNAUTHENTICATED, with HTTP status 401 (Apollo uses extensions.http and drops it from the body). */
export function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
}

/** Verifies `Bearer <token>` and makes the context; UNAUTHENTICATED when it does not verify. */
export async function authenticatedContext(engine: Engine, events: TenantEvents, auth: Authenticator, authorization: unknown): Promise<GraphQLContext> {
  try {
    return createContext(engine, events, await auth.authenticate(authorization));
  } catch (err) {
    if (err instanceof AuthenticationError) throw unauthenticated(err.message);
    throw err;
  }
}
