/**
 * createServer(config) -> { url, stop }: one Node HTTP server carries the GraphQL endpoint (Apollo,
 * through its integration API), WebSocket subscriptions (graphql-ws, src/graphql/websocket.ts) on the
 * same path, /healthz, /readyz, /metrics, and the web pages (src/webui.ts: the board at /, the
 * playground at GET /graphql). Where a request enters: handleHttp (queries, mutations) and
 * attachWebSocket (subscriptions); both use the one schema, build the context with createContext from
 * the verified token, and apply the same limits (src/graphql/limits.ts) and rate limit
 * (src/auth/rate-limit.ts).
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, HeaderMap, type HTTPGraphQLRequest, type HTTPGraphQLResponse } from '@apollo/server';
import type { GraphQLFormattedError } from 'graphql';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { engineOptions, type Config } from './config.js';
import { Engine } from './app/engine.js';
import { authenticatedContext, DEFAULT_TENANT, type GraphQLContext } from './graphql/context.js';
import { formatGraphQLError } from './graphql/errors.js';
import { createJitExecution } from './graphql/executor.js';
import { createDirectExecution } from './graphql/direct-execution.js';
import { REQUEST_ID_HEADER } from './graphql/observe.js';
import { checkDocumentShape, createOperationLimits, PARSE_OPTIONS } from './graphql/limits.js';
import { attachWebSocket } from './graphql/websocket.js';
import { createAuthenticator, type Authenticator } from './auth/tokens.js';
import { RateLimiter, rateLimited } from './auth/rate-limit.js';
import { handleCors } from './auth/origins.js';
import { buildGraphQLSchema } from './app/schema.js';
import { createLog, type Log } from './log.js';
import { createEventRelay, type EventRelay } from './events/relay.js';
import { TenantEvents } from './events/tenant-events.js';
import { createSubscriptionSharing, type SubscriptionSharing } from './events/shared-subscriptions.js';
import { addRedisGauges, addSubscriptionGauges, openSockets, redisGauges, registry } from './metrics.js';
import { connectRedis, isCluster, type RedisClient, type RedisTarget } from './redis/client.js';
import { resolveRedis } from './redis/connect.js';
import { redisTrouble } from './redis/replies.js';
import { httpRequestPlugin } from './graphql/http-plugins.js';
import { loadFunctions, reloadFunctions } from './redis/functions.js';
import { StartupError } from './startup.js';
import { createWebUi } from './webui.js';
import { SchedulerWorker } from './worker/scheduler.worker.js';

export const GRAPHQL_PATH = '/graphql';
const MAX_BODY_BYTES = 1024 * 1024;

export interface RunningServer {
  /** http://host:port/graphql */
  url: string;
  /** ws://host:port/graphql */
  wsUrl: string;
  port: number;
  /** The one Redis' URL; on a cluster, the first seed's. */
  redisUrl: string;
  /** What the server connects to: that URL, or the cluster's seeds (src/redis/client.ts connectRedis). */
  redisTarget: RedisTarget;
  engine: Engine;
  worker: SchedulerWorker | null;
  /** Verifies tokens; signs them too with a shared secret (AUTH_JWT_SECRET or the development one). */
  auth: Authenticator;
  /** The development admin token (no key configured, outside production), or null. */
  devToken: string | null;
  /** Live subscription listeners on a channel in this instance (tests wait on it). */
  listenerCount(channel: string): number;
  /** The event relay behind subscriptions (its stats feed monitoring; tests inspect it). */
  eventRelay: EventRelay;
  /** Subscriptions that share one execution (src/events/shared-subscriptions.ts). */
  subscriptionSharing: SubscriptionSharing;
  stop(): Promise<void>;
}

/**
 * Loads the functions and the built-in order machine of the `default` tenant (other tenants get it at
 * their first request, see prepareTenant); run at start and after every reconnect.
 */
async function prepareRedis(redis: RedisClient, engine: Engine, log: Log): Promise<void> {
  await loadFunctions(redis, { log });
  await engine.workflows.ensureOrderMachine(DEFAULT_TENANT);
}

export interface ServerOptions {
  log?: Log;
  /** A token the web pages send (playground headers, board; src/webui.ts); default: the development token. */
  devToken?: string | null;
}

/** How long the development token printed at start is valid. */
const DEV_TOKEN_TTL_S = 24 * 3600;

/**
 * Starts everything; on any failure releases, in reverse order, everything taken so far (a private
 * redis-server, connections, the HTTP server) before rethrowing, so a failed start leaves nothing
 * running.
 */
export async function createServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const release: (() => Promise<unknown> | unknown)[] = [];
  try {
    return await startServer(config, options, release);
  } catch (err) {
    for (const undo of release.reverse()) {
      try {
        await undo();
      } catch {
        // keep releasing the rest; the start-up error is the one to report
      }
    }
    throw err;
  }
}

async function startServer(config: Config, options: ServerOptions, release: (() => Promise<unknown> | unknown)[]): Promise<RunningServer> {
  const log = options.log ?? createLog(config.logLevel, config.logFormat);
  const resolved = await resolveRedis({ redisCluster: config.redisCluster, redisUrl: config.redisUrl, localUrl: config.localRedisUrl, dataDir: config.dataDir, log });
  release.push(() => resolved.stop());
  // after Redis is found: a start that cannot find one leaves DATA_DIR alone
  const auth = await createAuthenticator(config.auth, config.dataDir);
  // Commands fail fast while Redis is away, and the client keeps reconnecting. No auto-pipelining:
  // with many concurrent FCALLs it cut process_order throughput from ~7k to ~4.5k/s (npm run bench).
  const redis = connectRedis(resolved.target, { maxRetriesPerRequest: 1 });
  release.push(() => redis.disconnect());
  let redisErrorLogged = false;
  redis.on('error', (err) => {
    if (!redisErrorLogged) log(`redis: ${err.message} (reconnecting)`);
    redisErrorLogged = true;
  });
  const engine = new Engine(redis, engineOptions(config));

  let functionsReady = false;
  await prepareRedis(redis, engine, log);
  functionsReady = true;
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
  // A primary the cluster client meets for the first time (added, or a replica promoted by a
  // failover) may hold no functions or older ones.
  if (isCluster(redis)) {
    redis.on('+node', () => {
      reloadFunctions(redis, log).catch((err: Error) => log(`redis: could not load functions on a new cluster node: ${err.message}`));
    });
  }

  const errorFormat = { log, development: config.nodeEnv === 'development' };
  const relay = createEventRelay(resolved.target, redis, { maxQueuedBytes: config.subscriptionMaxQueuedBytes, log });
  release.push(() => relay.close());
  const events = new TenantEvents(relay);
  const schema = await buildGraphQLSchema();
  const limiter = new RateLimiter(redis, config.limits);
  const httpServer = http.createServer();
  const sharing = createSubscriptionSharing({
    enabled: config.subscriptionSharing,
    maxBufferedBytes: config.subscriptionMaxQueuedBytes,
    formatErrors: (errors) => errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)),
    groupContext: (contextValue, subscribers) => {
      const context = contextValue as GraphQLContext;
      return { ...context, events: context.events.sharedBy(subscribers) };
    },
  });

  const operationLimits = createOperationLimits(schema, config.limits);
  const subscriptions = attachWebSocket(httpServer, { schema, engine, events, sharing, auth, limiter, config, log, errorFormat, prepareTenant });

  const jit = createJitExecution(schema);
  const formatError = (formatted: GraphQLFormattedError, error: unknown) => formatGraphQLError(formatted, error, errorFormat);
  // validated JSON POST operations skip Apollo's request pipeline; Apollo answers everything else
  const direct = config.httpDirectExecution ? createDirectExecution({ schema, jit, limits: operationLimits, introspection: config.introspection, formatError, log }) : null;
  const apollo = new ApolloServer<GraphQLContext>({
    // graphql-jit executes the schema, behind Apollo's gateway interface (src/graphql/executor.ts)
    gateway: jit.gateway,
    includeStacktraceInErrorResponses: false,
    introspection: config.introspection,
    parseOptions: PARSE_OPTIONS,
    // src/main.ts owns SIGTERM/SIGINT and stops everything in order (worker, HTTP, sockets, Redis)
    stopOnTerminationSignals: false,
    formatError,
    plugins: [
      ApolloServerPluginCacheControlDisabled(),
      ApolloServerPluginDrainHttpServer({ httpServer }),
      // GET /graphql from a browser is the bundled playground (src/webui.ts), not Apollo's CDN page
      ApolloServerPluginLandingPageDisabled(),
      // subscriptions over HTTP refused, the limits, the 503 mapping, metrics and the request log
      httpRequestPlugin({ wsPath: GRAPHQL_PATH, log, checkLimits: (document, name, variables) => operationLimits.check(document, name, variables) }),
      {
        async serverWillStart() {
          return {
            async drainServer() {
              direct?.stop();
              await subscriptions.dispose(); // closes every socket with 1001 Going Away
            },
          };
        },
      },
    ],
  });
  await apollo.start();
  release.push(() => apollo.stop());

  // Outside production with no key configured, a ready-to-use admin token for tenant `default`:
  // printed at start (src/main.ts) and put in the playground's headers editor.
  const devToken =
    options.devToken ?? (auth.devSecretFile ? await auth.sign({ sub: 'admin', tenant: DEFAULT_TENANT, role: 'admin' }, DEV_TOKEN_TTL_S) : null);
  const webUi = createWebUi({ graphqlPath: GRAPHQL_PATH, playground: config.playground, devToken: () => devToken });
  const removeRedisGauges = addRedisGauges(
    redisGauges(redis, (t) => engine.context.keys(t), () => preparedTenants),
  );
  const removeSubscriptionGauges = addSubscriptionGauges(relay);
  release.push(removeRedisGauges, removeSubscriptionGauges);

  /** Ready: Redis answers, the functions are loaded, and Redis would accept a write. */
  async function ready(): Promise<{ ok: boolean; reason?: string }> {
    if (redis.status !== 'ready') return { ok: false, reason: 'Redis is unreachable' };
    if (!functionsReady) return { ok: false, reason: 'functions not loaded yet' };
    const probe = writeProbe(redis).then(
      (reason) => (reason ? { ok: false, reason } : { ok: true }),
      () => ({ ok: false, reason: 'Redis is unreachable' }),
    );
    const timeout = new Promise<{ ok: boolean; reason: string }>((resolve) =>
      setTimeout(() => resolve({ ok: false, reason: 'Redis did not answer within 1 s' }), 1000).unref(),
    );
    return Promise.race([probe, timeout]);
  }

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz') {
      const { ok, reason } = await ready();
      return sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', redis: redis.status, functionsLoaded: functionsReady, ...(reason ? { reason } : {}) });
    }
    // web pages and metrics: the board at /, the playground at GET /graphql (text/html), /metrics
    if (url.pathname === '/metrics') return sendMetrics(res);
    if (webUi.handle(req, res, url)) return;
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
    const requestId = /^[A-Za-z0-9._-]{1,64}$/.test(headers.get(REQUEST_ID_HEADER) ?? '') ? headers.get(REQUEST_ID_HEADER)! : randomUUID();
    headers.set(REQUEST_ID_HEADER, requestId);
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const httpGraphQLRequest: HTTPGraphQLRequest = { method: (req.method ?? 'GET').toUpperCase(), headers, search: url.search, body };
    // who is calling (UNAUTHENTICATED, 401), whether it may now (RATE_LIMITED, 429), and whether the
    // document's shape is within the limits, before Apollo validates it (QUERY_TOO_COMPLEX)
    const context = async () => {
      const ctx = await authenticatedContext(engine, events, auth, req.headers.authorization);
      const retryAfterMs = await limiter.take(ctx.principal).catch(failOpenOnRedisTrouble(null));
      if (retryAfterMs !== null) throw rateLimited(retryAfterMs);
      const params = (body && typeof body === 'object' ? body : Object.fromEntries(url.searchParams)) as Record<string, unknown>;
      const tooComplex = checkDocumentShape(params.query, params.operationName, config.limits);
      if (tooComplex) throw tooComplex;
      return prepareTenant(ctx).catch(failOpenOnRedisTrouble(ctx));
    };
    const response = (await runDirectly(httpGraphQLRequest, requestId, context)) ?? (await apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context }));
    for (const [name, value] of response.headers) res.setHeader(name, value);
    res.statusCode = graphqlOverHttpStatus(response);
    if (response.body.kind === 'complete') {
      res.end(response.body.string);
      return;
    }
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
  }

  /**
   * The response of direct execution, or null for Apollo to answer (then `context` answers what it
   * answered here, so the rate limit is not taken twice and a failure is reported by Apollo).
   */
  async function runDirectly(request: HTTPGraphQLRequest, requestId: string, context: () => Promise<GraphQLContext>): Promise<HTTPGraphQLResponse | null> {
    const taken = direct?.take(request, requestId);
    if (!taken) return null;
    const made = context();
    let ctx: GraphQLContext;
    try {
      ctx = await made;
    } catch {
      return apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest: request, context: () => made });
    }
    return (await direct!.run(taken, ctx)) ?? apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest: request, context: async () => ctx });
  }

  httpServer.on('request', (req, res) => {
    handleHttp(req, res).catch((err: Error) => {
      log(`http: ${err.message}`, { err });
      if (!res.headersSent) sendJson(res, 500, { errors: [{ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
      else res.end();
    });
  });

  await listen(httpServer, config.port, config.host);
  release.push(() => new Promise((resolve) => httpServer.close(resolve)));
  const { port } = httpServer.address() as AddressInfo;
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  await resolved.announce?.(`http://${hostForUrl}:${port}${GRAPHQL_PATH}`);

  const worker = config.worker.enabled
    ? new SchedulerWorker(engine, { tenants: config.worker.tenants, redis, tickMs: config.worker.tickMs, leaseMs: config.worker.leaseMs, maxAttempts: config.worker.maxAttempts, log })
    : null;
  worker?.start();

  let stopping: Promise<void> | null = null;
  return {
    url: `http://${hostForUrl}:${port}${GRAPHQL_PATH}`,
    wsUrl: `ws://${hostForUrl}:${port}${GRAPHQL_PATH}`,
    port,
    redisUrl: resolved.url,
    redisTarget: resolved.target,
    engine,
    worker,
    auth,
    devToken,
    listenerCount: (channel) => relay.listenerCount(channel),
    eventRelay: relay,
    subscriptionSharing: sharing,
    stop() {
      stopping ??= (async () => {
        await worker?.stop();
        await apollo.stop(); // stops accepting, finishes in-flight requests, closes subscriptions
        await relay.close();
        removeRedisGauges();
        removeSubscriptionGauges();
        redis.disconnect();
        await resolved.stop();
      })();
      return stopping;
    },
  };
}

/**
 * Redis trouble met while making the context (the rate-limit call, the tenant's order machine) lets
 * the request go on: while Redis is out of memory reads still work, and an operation that needs Redis
 * fails on its own call with SERVICE_UNAVAILABLE (src/graphql/errors.ts). Anything else is thrown.
 */
export function failOpenOnRedisTrouble<T>(value: T): (err: unknown) => T {
  return (err) => {
    if (redisTrouble(err)) return value;
    throw err;
  };
}

/** Codes of GraphQL request errors: the document does not parse or validate, no operation to run, variables fail coercion. */
const REQUEST_ERROR_CODES = new Set(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'OPERATION_RESOLUTION_FAILURE', 'BAD_USER_INPUT']);

/**
 * GraphQL over HTTP: a well-formed request answered in application/json gets 200 even when it fails
 * with request errors (legacy clients read the body only on 200); under
 * application/graphql-response+json Apollo's 400 stays. Bodies are not touched.
 */
function graphqlOverHttpStatus(response: HTTPGraphQLResponse): number {
  const status = response.status ?? 200;
  if (status !== 400 || response.body.kind !== 'complete') return status;
  if (response.headers.get('content-type')?.split(';')[0]?.trim() !== 'application/json') return status;
  let errors: unknown;
  try {
    errors = (JSON.parse(response.body.string) as { errors?: unknown }).errors;
  } catch {
    return status;
  }
  const requestErrors =
    Array.isArray(errors) && errors.length > 0 && errors.every((e: { extensions?: { code?: unknown } }) => REQUEST_ERROR_CODES.has(e?.extensions?.code as string));
  return requestErrors ? 200 : status;
}

/** Listens, or rejects with a StartupError saying in one line why the address cannot be used. */
function listen(httpServer: http.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      if (err.code === 'EADDRINUSE') reject(new StartupError(`port ${port} is already in use on ${host}: stop what listens there or set PORT to another port`));
      else if (err.code === 'EACCES') reject(new StartupError(`no permission to listen on ${where}: choose a PORT above 1023`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(new StartupError(`HOST ${host} is not an address of this machine`));
      else reject(new StartupError(`cannot listen on ${where}: ${err.message}`));
    };
    httpServer.once('error', onError);
    httpServer.listen(port, host, () => {
      httpServer.off('error', onError);
      resolve();
    });
  });
}

/**
 * Whether Redis would run a write now: a script with a shebang and no `no-writes` flag is refused
 * exactly when Redis refuses writes (out of memory, loading, read-only replica), and writes nothing.
 * Returns why not, or null; an error that says nothing about that (an ACL without EVAL) counts as yes
 * once PING answers.
 */
async function writeProbe(redis: RedisClient): Promise<string | null> {
  try {
    await redis.call('EVAL', '#!lua\nreturn 1', '0');
    return null;
  } catch (err) {
    const trouble = redisTrouble(err);
    if (trouble) return trouble;
    return (await redis.ping()) === 'PONG' ? null : 'Redis did not answer PING';
  }
}

async function sendMetrics(res: ServerResponse): Promise<void> {
  const text = await registry.metrics();
  res.statusCode = 200;
  res.setHeader('content-type', registry.contentType);
  res.end(text);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(value));
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  const length = req.headers['content-length'];
  const text = length !== undefined && Number(length) <= MAX_BODY_BYTES ? await readDeclaredBody(req) : await readBodyChunks(req);
  const type = req.headers['content-type'] ?? '';
  if (!type.includes('application/json')) return text;
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw Object.assign(new Error('request body is not valid JSON'), { status: 400 });
  }
}

async function readBodyChunks(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error(`request body exceeds ${MAX_BODY_BYTES} bytes`), { status: 413 });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A body whose content-length is within the limit (the HTTP parser holds it to that length), read with plain listeners. */
function readDeclaredBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('the request was aborted'));
    });
  });
}
