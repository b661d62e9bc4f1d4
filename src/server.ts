/**
 * createServer(config) -> { url, stop }: one Node HTTP server carries the GraphQL endpoint (Apollo,
 * through its integration API), WebSocket subscriptions (graphql-ws) on the same path, /healthz and
 * /readyz. Where a request enters: handleHttp (queries, mutations) and useServer (subscriptions);
 * both use the one schema and build the context with createContext from the verified token, and
 * apply the same limits (src/graphql/limits.ts) and rate limit (src/auth/rate-limit.ts).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, HeaderMap, type HTTPGraphQLRequest } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { Redis } from 'ioredis';
import type { Config } from './config.js';
import { Engine } from './engine/engine.js';
import { authenticatedContext, DEFAULT_TENANT, type GraphQLContext } from './graphql/context.js';
import { formatGraphQLError } from './graphql/errors.js';
import { checkDocumentShape, checkLimits, PARSE_OPTIONS } from './graphql/limits.js';
import { attachWebSocket } from './graphql/websocket.js';
import { createAuthenticator, type Authenticator } from './auth/tokens.js';
import { RateLimiter, rateLimited } from './auth/rate-limit.js';
import { handleCors } from './auth/origins.js';
import { buildGraphQLSchema } from './graphql/schema.js';
import { createLog, type Log } from './log.js';
import { createEventRelay } from './pubsub.js';
import { resolveRedis } from './redis/connect.js';
import { loadFunctions } from './redis/functions.js';
import { SchedulerWorker } from './worker/scheduler.worker.js';

export const GRAPHQL_PATH = '/graphql';
const MAX_BODY_BYTES = 1024 * 1024;

export interface RunningServer {
  /** http://host:port/graphql */
  url: string;
  /** ws://host:port/graphql */
  wsUrl: string;
  port: number;
  redisUrl: string;
  engine: Engine;
  worker: SchedulerWorker | null;
  /** Verifies tokens; signs them too with a shared secret (AUTH_JWT_SECRET or the development one). */
  auth: Authenticator;
  /** Live subscription listeners on a channel in this instance (tests wait on it). */
  listenerCount(channel: string): number;
  stop(): Promise<void>;
}

/**
 * Loads the functions and the built-in order machine of the `default` tenant (other tenants get it at
 * their first request, see prepareTenant); run at start and after every reconnect.
 */
async function prepareRedis(redis: Redis, engine: Engine, log: Log): Promise<void> {
  await loadFunctions(redis, { log });
  await engine.workflows.ensureOrderMachine(DEFAULT_TENANT);
}

export interface ServerOptions {
  log?: Log;
}

export async function createServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLog(config.logLevel);
  const auth = await createAuthenticator(config.auth, config.dataDir);
  const resolved = await resolveRedis({ redisUrl: config.redisUrl, localUrl: config.localRedisUrl, dataDir: config.dataDir, log });
  // Commands fail fast while Redis is away, and the client keeps reconnecting. No auto-pipelining:
  // with many concurrent FCALLs it cut process_order throughput from ~7k to ~4.5k/s (npm run bench).
  const redis = new Redis(resolved.url, { maxRetriesPerRequest: 1 });
  let redisErrorLogged = false;
  redis.on('error', (err) => {
    if (!redisErrorLogged) log(`redis: ${err.message} (reconnecting)`);
    redisErrorLogged = true;
  });
  const engine = new Engine(redis, { streamMaxLen: config.streamMaxLen });

  let functionsReady = false;
  try {
    await prepareRedis(redis, engine, log);
    functionsReady = true;
  } catch (err) {
    redis.disconnect();
    await resolved.stop();
    throw err;
  }
  // Tenants whose order machine this process has ensured (once per tenant; again after a reconnect).
  const preparedTenants = new Set<string>();
  async function prepareTenant(context: GraphQLContext): Promise<GraphQLContext> {
    if (!preparedTenants.has(context.tenant)) {
      await engine.workflows.ensureOrderMachine(context.tenant);
      if (preparedTenants.size >= 10_000) preparedTenants.clear();
      preparedTenants.add(context.tenant);
    }
    return context;
  }
  // A Redis that restarts empty loses its functions: load them again when the connection returns.
  redis.on('close', () => {
    functionsReady = false;
    preparedTenants.clear();
  });
  redis.on('ready', () => {
    redisErrorLogged = false;
    prepareRedis(redis, engine, log).then(
      () => (functionsReady = true),
      (err: Error) => log(`redis: could not load functions after reconnect: ${err.message}`),
    );
  });

  const errorFormat = { log, development: config.nodeEnv === 'development' };
  const relay = createEventRelay(resolved.url);
  const schema = await buildGraphQLSchema(relay.pubSub);
  const limiter = new RateLimiter(redis, config.limits);
  const httpServer = http.createServer();

  const subscriptions = attachWebSocket(httpServer, { schema, engine, auth, limiter, config, log, errorFormat, prepareTenant });

  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    includeStacktraceInErrorResponses: false,
    introspection: config.introspection,
    parseOptions: PARSE_OPTIONS,
    // src/main.ts owns SIGTERM/SIGINT and stops everything in order (worker, HTTP, sockets, Redis)
    stopOnTerminationSignals: false,
    formatError: (formatted, error) => formatGraphQLError(formatted, error, errorFormat),
    plugins: [
      ApolloServerPluginCacheControlDisabled(),
      ApolloServerPluginDrainHttpServer({ httpServer }),
      config.introspection ? ApolloServerPluginLandingPageLocalDefault({ footer: false }) : ApolloServerPluginLandingPageDisabled(),
      {
        // the same limits as over WebSocket, once the operation is validated (large documents had
        // their shape checked before: see the context function)
        async requestDidStart() {
          return {
            async didResolveOperation({ request, document }) {
              const tooComplex = checkLimits(schema, document, request.operationName, request.variables, config.limits);
              if (tooComplex) throw tooComplex;
            },
          };
        },
      },
      {
        async serverWillStart() {
          return {
            async drainServer() {
              await subscriptions.dispose(); // closes every socket with 1001 Going Away
            },
          };
        },
      },
    ],
  });
  await apollo.start();

  async function ready(): Promise<boolean> {
    if (!functionsReady || redis.status !== 'ready') return false;
    const ping = redis.ping().then(
      (reply) => reply === 'PONG',
      () => false,
    );
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref());
    return Promise.race([ping, timeout]);
  }

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz') {
      const ok = await ready();
      return sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', redis: redis.status, functionsLoaded: functionsReady });
    }
    if (url.pathname !== GRAPHQL_PATH) return sendJson(res, 404, { error: `not found; the API is at ${GRAPHQL_PATH}` });
    if (handleCors(req, res, config.corsOrigins)) return;

    let body: unknown;
    try {
      body = await readBody(req);
    } catch (err) {
      return sendJson(res, (err as { status?: number }).status ?? 400, { errors: [{ message: (err as Error).message, extensions: { code: 'BAD_REQUEST' } }] });
    }
    const headers = new HeaderMap();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const httpGraphQLRequest: HTTPGraphQLRequest = { method: (req.method ?? 'GET').toUpperCase(), headers, search: url.search, body };
    // who is calling (UNAUTHENTICATED, 401), whether it may now (RATE_LIMITED, 429), and whether the
    // document's shape is within the limits, before Apollo validates it (QUERY_TOO_COMPLEX)
    const context = async () => {
      const ctx = await authenticatedContext(engine, auth, req.headers.authorization);
      const retryAfterMs = await limiter.take(ctx.principal);
      if (retryAfterMs !== null) throw rateLimited(retryAfterMs);
      const params = (body && typeof body === 'object' ? body : Object.fromEntries(url.searchParams)) as Record<string, unknown>;
      const tooComplex = checkDocumentShape(params.query, params.operationName, config.limits);
      if (tooComplex) throw tooComplex;
      return prepareTenant(ctx);
    };
    const response = await apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context });
    for (const [name, value] of response.headers) res.setHeader(name, value);
    res.statusCode = response.status ?? 200;
    if (response.body.kind === 'complete') {
      res.end(response.body.string);
      return;
    }
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
  }

  httpServer.on('request', (req, res) => {
    handleHttp(req, res).catch((err: Error) => {
      log(`http: ${err.stack ?? err.message}`);
      if (!res.headersSent) sendJson(res, 500, { errors: [{ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
      else res.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => resolve());
  });
  const { port } = httpServer.address() as AddressInfo;
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;

  const worker = config.worker.enabled
    ? new SchedulerWorker(engine, { tenants: config.worker.tenants, redis, tickMs: config.worker.tickMs, leaseMs: config.worker.leaseMs, log })
    : null;
  worker?.start();

  let stopping: Promise<void> | null = null;
  return {
    url: `http://${hostForUrl}:${port}${GRAPHQL_PATH}`,
    wsUrl: `ws://${hostForUrl}:${port}${GRAPHQL_PATH}`,
    port,
    redisUrl: resolved.url,
    engine,
    worker,
    auth,
    listenerCount: (channel) => relay.listenerCount(channel),
    stop() {
      stopping ??= (async () => {
        await worker?.stop();
        await apollo.stop(); // stops accepting, finishes in-flight requests, closes subscriptions
        await relay.close();
        redis.disconnect();
        await resolved.stop();
      })();
      return stopping;
    },
  };
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(value));
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error(`request body exceeds ${MAX_BODY_BYTES} bytes`), { status: 413 });
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const type = req.headers['content-type'] ?? '';
  if (!type.includes('application/json')) return text;
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw Object.assign(new Error('request body is not valid JSON'), { status: 400 });
  }
}
