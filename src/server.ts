/**
 * createServer(config) -> { url, stop }: one Node HTTP server carries the GraphQL endpoint (Apollo,
 * through its integration API), WebSocket subscriptions (graphql-ws) on the same path, /healthz and
 * /readyz. Where a request enters: handleHttp (queries, mutations) and useServer (subscriptions);
 * both use the one schema and build the context with createContext.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, HeaderMap, type HTTPGraphQLRequest, type HTTPGraphQLResponse } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import { Redis } from 'ioredis';
import { engineOptions, type Config } from './config.js';
import { Engine } from './engine/engine.js';
import { createContext, DEFAULT_TENANT, type GraphQLContext } from './graphql/context.js';
import { formatGraphQLError } from './graphql/errors.js';
import { buildGraphQLSchema } from './graphql/schema.js';
import { createLog, type Log } from './log.js';
import { createEventRelay, type EventRelay } from './events/relay.js';
import { TenantEvents } from './events/tenant-events.js';
import { parseSubscribeOperation } from './events/subscribe-operation.js';
import { createSubscriptionSharing, type SubscriptionSharing } from './events/shared-subscriptions.js';
import { resolveRedis } from './redis/connect.js';
import { redisTrouble } from './redis/replies.js';
import { rejectSubscriptionsOverHttp, serviceUnavailableStatus } from './graphql/http-plugins.js';
import { loadFunctions } from './redis/functions.js';
import { StartupError } from './startup.js';
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
  /** Live subscription listeners on a channel in this instance (tests wait on it). */
  listenerCount(channel: string): number;
  /** The event relay behind subscriptions (its stats feed monitoring; tests inspect it). */
  eventRelay: EventRelay;
  /** Subscriptions that share one execution (src/events/shared-subscriptions.ts). */
  subscriptionSharing: SubscriptionSharing;
  stop(): Promise<void>;
}

/** Loads the functions and the built-in order machine; run at start and after every reconnect. */
async function prepareRedis(redis: Redis, engine: Engine, tenant: string, log: Log): Promise<void> {
  await loadFunctions(redis, { log });
  await engine.workflows.ensureOrderMachine(tenant);
}

export interface ServerOptions {
  log?: Log;
  /**
   * The tenant every request and connection works in. Authentication will decide it per request in
   * createContext; until then one server serves one tenant (tests give each file its own).
   */
  tenant?: string;
}

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
  const log = options.log ?? createLog(config.logLevel);
  const tenant = options.tenant ?? DEFAULT_TENANT;
  const resolved = await resolveRedis({ redisUrl: config.redisUrl, localUrl: config.localRedisUrl, dataDir: config.dataDir, log });
  release.push(() => resolved.stop());
  // Commands fail fast while Redis is away, and the client keeps reconnecting. No auto-pipelining:
  // with many concurrent FCALLs it cut process_order throughput from ~7k to ~4.5k/s (npm run bench).
  const redis = new Redis(resolved.url, { maxRetriesPerRequest: 1 });
  release.push(() => redis.disconnect());
  let redisErrorLogged = false;
  redis.on('error', (err) => {
    if (!redisErrorLogged) log(`redis: ${err.message} (reconnecting)`);
    redisErrorLogged = true;
  });
  const engine = new Engine(redis, engineOptions(config));

  let functionsReady = false;
  await prepareRedis(redis, engine, tenant, log);
  functionsReady = true;
  // A Redis that restarts empty loses its functions: load them again when the connection returns.
  redis.on('close', () => {
    functionsReady = false;
  });
  redis.on('ready', () => {
    redisErrorLogged = false;
    prepareRedis(redis, engine, tenant, log).then(
      () => (functionsReady = true),
      (err: Error) => log(`redis: could not load functions after reconnect: ${err.message}`),
    );
  });

  const errorFormat = { log, development: config.nodeEnv === 'development' };
  const relay = createEventRelay(resolved.url, redis, { maxQueuedBytes: config.subscriptionMaxQueuedBytes, log });
  release.push(() => relay.close());
  const events = new TenantEvents(relay);
  const schema = await buildGraphQLSchema();
  const httpServer = http.createServer();
  // noServer: attached to the HTTP server, ws would re-emit its errors (EADDRINUSE at listen) and
  // graphql-ws would print them with a stack; listen() below reports those in one line instead.
  const wsServer = new WebSocketServer({ noServer: true });
  httpServer.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://localhost').pathname !== GRAPHQL_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wsServer.handleUpgrade(req, socket, head, (ws) => wsServer.emit('connection', ws, req));
  });
  const sharing = createSubscriptionSharing({
    enabled: config.subscriptionSharing,
    maxBufferedBytes: config.subscriptionMaxQueuedBytes,
    formatErrors: (errors) => errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)),
    groupContext: (contextValue, subscribers) => {
      const context = contextValue as GraphQLContext;
      return { ...context, events: context.events.sharedBy(subscribers) };
    },
  });
  const subscriptions = useServer<Record<string, unknown>, Record<string, never>>(
    {
      schema,
      context: (ctx, id) => {
        const context = createContext(engine, events, tenant);
        sharing.bind(context, { socket: ctx.extra.socket, id, scope: tenant });
        return context;
      },
      // identical subscriptions share one execution per event (src/events/shared-subscriptions.ts)
      subscribe: (args) => sharing.subscribe(args),
      // A document that does not parse or validate fails its own operation; the socket and its other
      // subscriptions stay open (graphql-ws would otherwise close the socket with 4500).
      onSubscribe: (_ctx, _id, payload) => parseSubscribeOperation(schema, payload),
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)),
    },
    wsServer,
  );

  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    includeStacktraceInErrorResponses: false,
    // src/main.ts owns SIGTERM/SIGINT and stops everything in order (worker, HTTP, sockets, Redis)
    stopOnTerminationSignals: false,
    formatError: (formatted, error) => formatGraphQLError(formatted, error, errorFormat),
    plugins: [
      ApolloServerPluginCacheControlDisabled(),
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginLandingPageLocalDefault({ footer: false }),
      rejectSubscriptionsOverHttp(GRAPHQL_PATH),
      serviceUnavailableStatus(),
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
  release.push(() => apollo.stop());

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
    if (url.pathname !== GRAPHQL_PATH) return sendJson(res, 404, { error: `not found; the API is at ${GRAPHQL_PATH}` });

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
    const response = await apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context: async () => createContext(engine, events, tenant) });
    for (const [name, value] of response.headers) res.setHeader(name, value);
    res.statusCode = graphqlOverHttpStatus(response);
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

  await listen(httpServer, config.port, config.host);
  release.push(() => new Promise((resolve) => httpServer.close(resolve)));
  const { port } = httpServer.address() as AddressInfo;
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  await resolved.announce?.(`http://${hostForUrl}:${port}${GRAPHQL_PATH}`);

  const worker = config.worker.enabled
    ? new SchedulerWorker(engine, { tenants: config.worker.tenants, tickMs: config.worker.tickMs, leaseMs: config.worker.leaseMs, maxAttempts: config.worker.maxAttempts, log })
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
    listenerCount: (channel) => relay.listenerCount(channel),
    eventRelay: relay,
    subscriptionSharing: sharing,
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
async function writeProbe(redis: Redis): Promise<string | null> {
  try {
    await redis.call('EVAL', '#!lua\nreturn 1', '0');
    return null;
  } catch (err) {
    const trouble = redisTrouble(err);
    if (trouble) return trouble;
    return (await redis.ping()) === 'PONG' ? null : 'Redis did not answer PING';
  }
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
