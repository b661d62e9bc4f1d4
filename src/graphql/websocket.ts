/**
 * The WebSocket endpoint (graphql-ws on the HTTP server's /graphql): where subscriptions, and queries
 * and mutations sent over WebSocket, enter. The same rules as over HTTP: the handshake's Origin is
 * checked (CORS_ORIGINS plus the server's own; else 403) and the number of sockets bounded
 * (WS_MAX_CONNECTIONS; else 503); messages are at most the 1 MB of an HTTP body (else close 1009);
 * connection_init must carry a valid token (else close 4401) and the socket closes with 4401 when
 * it expires; each operation takes a rate-limit token, is validated (introspection off when
 * configured) and checked against the same limits (src/graphql/limits.ts), and runs with the
 * context createContext makes from the token.
 */
import http, { type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { GraphQLError, NoSchemaIntrospectionCustomRule, parse, specifiedRules, validate, type DocumentNode, type GraphQLSchema } from 'graphql';
import { WebSocketServer, type WebSocket } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import type { Config } from '../config.js';
import type { Engine } from '../app/engine.js';
import type { Log } from '../log.js';
import type { Authenticator, Principal } from '../auth/tokens.js';
import type { TenantEvents } from '../events/tenant-events.js';
import type { SubscriptionSharing } from '../events/shared-subscriptions.js';
import { openSockets } from '../metrics.js';
import { redisTrouble } from '../redis/replies.js';
import { rateLimited, type RateLimiter } from '../auth/rate-limit.js';
import { originAllowed } from '../auth/origins.js';
import { createContext, type GraphQLContext } from './context.js';
import { clipMessage, formatGraphQLError, type ErrorFormatOptions } from './errors.js';
import { checkShape, createOperationLimits, PARSE_OPTIONS } from './limits.js';

export const GRAPHQL_WS_PATH = '/graphql';
/** The same bound as an HTTP body (src/server.ts). */
const MAX_MESSAGE_BYTES = 1024 * 1024;
/** Close code for a missing, invalid or expired token (the client reconnects with a new one). */
export const WS_UNAUTHORIZED = 4401;
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface WebSocketDeps {
  schema: GraphQLSchema;
  engine: Engine;
  /** The live event feeds subscriptions read (src/events/). */
  events: TenantEvents;
  /** Identical subscriptions share one execution per event (src/events/shared-subscriptions.ts). */
  sharing: SubscriptionSharing;
  auth: Authenticator;
  limiter: RateLimiter;
  config: Pick<Config, 'corsOrigins' | 'limits' | 'introspection'>;
  log: Log;
  errorFormat: ErrorFormatOptions;
  /** Ensures what a tenant needs at its first connection (the order machine). */
  prepareTenant(context: GraphQLContext): Promise<GraphQLContext>;
}

export function attachWebSocket(httpServer: Server, deps: WebSocketDeps): { dispose(): Promise<void> } {
  const { schema, engine, events, sharing, auth, limiter, config, log, errorFormat } = deps;
  const operationLimits = createOperationLimits(schema, config.limits);
  const wsServer = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  let upgrading = 0;
  httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    if (pathname !== GRAPHQL_WS_PATH) return refuseUpgrade(socket, 404, `not found; subscriptions are at ${GRAPHQL_WS_PATH}`);
    if (!originAllowed(req, config.corsOrigins)) return refuseUpgrade(socket, 403, 'origin not allowed (CORS_ORIGINS)');
    if (wsServer.clients.size + upgrading >= config.limits.wsMaxConnections) {
      return refuseUpgrade(socket, 503, 'too many WebSocket connections (WS_MAX_CONNECTIONS)');
    }
    // counted until the handshake completes or fails
    upgrading++;
    let counted = true;
    const settled = () => {
      if (counted) upgrading--;
      counted = false;
    };
    socket.once('close', settled);
    wsServer.handleUpgrade(req, socket, head, (ws) => {
      settled();
      wsServer.emit('connection', ws, req);
    });
  });

  const principals = new WeakMap<WebSocket, Principal>();
  const documents = new Map<string, DocumentNode>();
  const validationRules = config.introspection ? specifiedRules : [...specifiedRules, NoSchemaIntrospectionCustomRule];
  const server = useServer<Record<string, unknown>, Record<string, never>>(
    {
      schema,
      // close reasons never carry error messages to clients
      isProd: true,
      async onConnect(ctx) {
        const socket = ctx.extra.socket;
        let principal: Principal;
        try {
          principal = await auth.authenticate(ctx.connectionParams?.authorization);
        } catch (err) {
          socket.close(WS_UNAUTHORIZED, clipMessage((err as Error).message).slice(0, 120));
          return false;
        }
        await deps.prepareTenant(createContext(engine, events, principal)).catch((err: unknown) => {
          if (!redisTrouble(err)) throw err; // Redis trouble: its operations will say so, one by one
        });
        principals.set(socket, principal);
        let timer: NodeJS.Timeout;
        const arm = () => {
          const left = principal.expiresAt - Date.now();
          if (left <= 0) socket.close(WS_UNAUTHORIZED, 'token expired');
          else timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        };
        arm();
        socket.once('close', () => clearTimeout(timer));
        return true;
      },
      // identical subscriptions share one execution per event (src/events/shared-subscriptions.ts)
      subscribe: (args) => sharing.subscribe(args),
      // A document that does not parse or validate fails its own operation (an `error` message with
      // the code, as over HTTP); the socket and its other subscriptions stay open.
      async onSubscribe(ctx, id, payload) {
        const principal = principals.get(ctx.extra.socket);
        if (!principal || principal.expiresAt <= Date.now()) {
          ctx.extra.socket.close(WS_UNAUTHORIZED, 'token expired');
          return [new GraphQLError('token expired', { extensions: { code: 'UNAUTHENTICATED' } })];
        }
        // ctx.subscriptions already holds this operation
        if (Object.keys(ctx.subscriptions).length > config.limits.wsMaxSubscriptions) {
          return [
            new GraphQLError(`at most ${config.limits.wsMaxSubscriptions} operations per connection (WS_MAX_SUBSCRIPTIONS)`, {
              extensions: { code: 'QUERY_TOO_COMPLEX', limit: config.limits.wsMaxSubscriptions },
            }),
          ];
        }
        // Redis trouble lets the operation go on (it fails on its own call if it needs Redis)
        const retryAfterMs = await limiter.take(principal).catch((err: unknown) => {
          if (redisTrouble(err)) return null;
          throw err;
        });
        if (retryAfterMs !== null) return [rateLimited(retryAfterMs)];
        // many clients send the same few documents: parsed and validated once, then shared
        let document = documents.get(payload.query);
        if (!document) {
          try {
            document = parse(payload.query, PARSE_OPTIONS);
          } catch (err) {
            return [withCode(err instanceof GraphQLError ? err : new GraphQLError('the query does not parse'), 'GRAPHQL_PARSE_FAILED')];
          }
          const badShape = checkShape(document, payload.operationName, config.limits);
          if (badShape) return [badShape];
          const invalid = validate(schema, document, validationRules);
          if (invalid.length) return invalid.map((e) => withCode(e, 'GRAPHQL_VALIDATION_FAILED'));
          if (documents.size >= MAX_CACHED_DOCUMENTS) documents.delete(documents.keys().next().value!);
          documents.set(payload.query, document);
        }
        // the shape again (another operation of a cached document may be chosen), then the cost
        const tooComplex = operationLimits.check(document, payload.operationName, payload.variables);
        if (tooComplex) return [tooComplex];
        return {
          schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: sharing.bind(createContext(engine, events, principal), {
            socket: ctx.extra.socket,
            id,
            // what besides document and variables decides what a subscriber gets: its tenant, and for
            // an end user (whose feeds are filtered to its own account) who it is
            scope: `${principal.tenant}\u0000${principal.role}\u0000${principal.role === 'user' ? principal.sub : ''}`,
          }),
        };
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)),
    },
    wsServer,
  );
  // ws closes a socket that breaks the protocol itself (a message over maxPayload: 1009); report it
  // in our log instead of graphql-ws' console.error.
  wsServer.on('connection', (socket: WebSocket) => {
    openSockets.inc();
    socket.once('close', () => openSockets.dec());
    socket.removeAllListeners('error');
    socket.on('error', (err) => log(`websocket: ${err.message}; connection closed`));
  });
  /** Closes every socket with 1001 Going Away. */
  return { dispose: async () => server.dispose() };
}

const MAX_CACHED_DOCUMENTS = 500;

function withCode(error: GraphQLError, code: string): GraphQLError {
  return new GraphQLError(error.message, { nodes: error.nodes, source: error.source, positions: error.positions, extensions: { ...error.extensions, code } });
}

function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ error: message });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
