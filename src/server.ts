/**
 * createServer(config) -> { url, stop }: one Node HTTP server carries the GraphQL endpoint (Apollo,
 * through its integration API), WebSocket subscriptions (graphql-ws) on the same path, /healthz and
 * /readyz. Where a request enters: handleHttp (queries, mutations) and useServer (subscriptions);
 * both use the one schema and build the context with createContext.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { GraphQLFormattedError } from 'graphql';
import type { AddressInfo } from 'node:net';
import { ApolloServer, HeaderMap, type HTTPGraphQLRequest, type HTTPGraphQLResponse } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import { Redis } from 'ioredis';
import type { Config } from './config.js';
import { Engine } from './engine/engine.js';
import { createContext, DEFAULT_TENANT, type GraphQLContext } from './graphql/context.js';
import { formatGraphQLError } from './graphql/errors.js';
import { createJitExecution } from './graphql/executor.js';
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
  /** Live subscription listeners on a channel in this instance (tests wait on it). */
  listenerCount(channel: string): number;
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

export async function createServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLog(config.logLevel);
  const tenant = options.tenant ?? DEFAULT_TENANT;
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
    await prepareRedis(redis, engine, tenant, log);
    functionsReady = true;
  } catch (err) {
    redis.disconnect();
    await resolved.stop();
    throw err;
  }
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
  const relay = createEventRelay(resolved.url);
  const schema = await buildGraphQLSchema(relay.pubSub);
  const httpServer = http.createServer();
  const wsServer = new WebSocketServer({ server: httpServer, path: GRAPHQL_PATH });
  const subscriptions = useServer<Record<string, unknown>, Record<string, never>>(
    {
      schema,
      context: () => createContext(engine, tenant),
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatGraphQLError(e.toJSON(), e, errorFormat)),
    },
    wsServer,
  );

  const formatError = (formatted: GraphQLFormattedError, error: unknown) => formatGraphQLError(formatted, error, errorFormat);
  // graphql-jit executes the schema, in Apollo and on the fast path (src/graphql/executor.ts)
  const jit = createJitExecution(schema, { formatError });
  const apollo = new ApolloServer<GraphQLContext>({
    gateway: jit.gateway,
    includeStacktraceInErrorResponses: false,
    // src/main.ts owns SIGTERM/SIGINT and stops everything in order (worker, HTTP, sockets, Redis)
    stopOnTerminationSignals: false,
    formatError,
    plugins: [
      ApolloServerPluginCacheControlDisabled(),
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginLandingPageLocalDefault({ footer: false }),
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
    const url = parseRequestUrl(req.url);
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz') {
      const ok = await ready();
      return sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', redis: redis.status, functionsLoaded: functionsReady });
    }
    if (url.pathname !== GRAPHQL_PATH) return sendJson(res, 404, { error: `not found; the API is at ${GRAPHQL_PATH}` });

    let body: unknown;
    try {
      body = await readBody(req);
    } catch (err) {
      return sendJson(res, (err as { status?: number }).status ?? 400, { errors: [{ message: (err as Error).message, extensions: { code: 'BAD_REQUEST' } }] });
    }
    const contextValue = () => createContext(engine, tenant);
    const fast = await jit.tryFastPath(
      { method: req.method, contentType: req.headers['content-type'], accept: req.headers.accept, body },
      contextValue,
    );
    if (fast) {
      res.setHeader('content-type', fast.contentType);
      res.end(fast.body);
      return;
    }
    const headers = new HeaderMap();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const httpGraphQLRequest: HTTPGraphQLRequest = { method: (req.method ?? 'GET').toUpperCase(), headers, search: url.search, body };
    const response = await apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context: async () => contextValue() });
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

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => resolve());
  });
  const { port } = httpServer.address() as AddressInfo;
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;

  const worker = config.worker.enabled
    ? new SchedulerWorker(engine, { tenants: config.worker.tenants, tickMs: config.worker.tickMs, leaseMs: config.worker.leaseMs, log })
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
    stop() {
      stopping ??= (async () => {
        await worker?.stop();
        jit.disable();
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

/** The path and query of a request; a URL object only when there is more than `/graphql` (every POST). */
function parseRequestUrl(raw: string | undefined): { pathname: string; search: string } {
  if (raw === GRAPHQL_PATH) return { pathname: GRAPHQL_PATH, search: '' };
  return new URL(raw ?? '/', 'http://localhost');
}
