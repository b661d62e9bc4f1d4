/**
 * API test harness: an in-process atomflow server on a free port against the private redis-server,
 * a plain HTTP POST client, and a graphql-ws client that collects subscription events. The server
 * verifies tokens with TEST_JWT_SECRET; `t.gql` and `t.subscribe` send an admin token for `t.tenant`
 * unless given another token (`{ token }`, null for none). `t.token(...)` makes tokens.
 */
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { Redis, type Cluster } from 'ioredis';
import { SignJWT } from 'jose';
import { readConfig, type Config } from '../../src/config.js';
import type { Role } from '../../src/auth/tokens.js';
import { createServer, type RunningServer } from '../../src/server.js';
import { connectRedis, isCluster, primaryFor } from '../../src/redis/client.js';
import { snapshotTenant, uniqueTenant } from '../setup/helpers.js';

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  data?: T | null;
  errors?: { message: string; path?: string[]; extensions?: { code?: string; [k: string]: unknown } }[];
}

/** Which token a request sends: default an admin token of the server's tenant; null sends none. */
export interface AuthOption {
  token?: string | null;
}

export interface TokenClaims {
  tenant?: string;
  role?: Role;
  sub?: string;
  /** Seconds until `exp` (negative: already expired). Default 3600. */
  ttlSeconds?: number;
}

export interface TestServer {
  server: RunningServer;
  tenant: string;
  redis: Redis;
  gql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: AuthOption): Promise<GraphQLResponse<T>>;
  /** gql, expecting success (200, no errors): its data. */
  ok<T = Record<string, any>>(query: string, variables?: Record<string, unknown>): Promise<T>;
  snapshot(): Promise<Record<string, unknown>>;
  subscribe(query: string, variables?: Record<string, unknown>, options?: AuthOption): Promise<Subscription>;
  /** A token signed with TEST_JWT_SECRET; defaults: this tenant, role admin, sub = role. */
  token(claims?: TokenClaims): Promise<string>;
  close(): Promise<void>;
}

export interface Subscription {
  events: any[];
  errors: unknown[];
  /** Resolves once `count` events have arrived (fails the test on timeout). */
  waitFor(count: number, timeoutMs?: number): Promise<any[]>;
  close(): void;
}

/** The HS256 secret test servers verify with (tests only; never a real secret). */
export const TEST_JWT_SECRET = 'atomflow-test-secret-not-for-production-use-0123456789';

/**
 * Test config: AUTH_JWT_SECRET = TEST_JWT_SECRET, a rate limit high enough not to slow tests. The
 * private redis-server, or in the cluster run the loopback cluster; a `redisUrl` override means
 * that one Redis.
 */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const clusterNodes = inject('redisClusterNodes');
  const base = readConfig({
    ...(clusterNodes && !overrides.redisUrl ? { REDIS_CLUSTER_NODES: clusterNodes } : { REDIS_URL: inject('redisUrl') }),
    PORT: '0',
    LOG_LEVEL: 'silent',
    WORKER_ENABLED: 'false',
    NODE_ENV: 'test',
    AUTH_JWT_SECRET: TEST_JWT_SECRET,
    RATE_LIMIT_PER_S: '10000',
    RATE_LIMIT_BURST: '10000',
  });
  return {
    ...base,
    ...overrides,
    worker: { ...base.worker, ...(overrides.worker ?? {}) },
    limits: { ...base.limits, ...(overrides.limits ?? {}) },
    auth: { ...base.auth, ...(overrides.auth ?? {}) },
  };
}

/** Signs a token with `secret` (default TEST_JWT_SECRET): HS256, claims sub, tenant, role, exp. */
export async function testToken(claims: TokenClaims & { tenant: string }, secret = TEST_JWT_SECRET): Promise<string> {
  const role = claims.role ?? 'admin';
  return new SignJWT({ tenant: claims.tenant, role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub ?? role)
    .setExpirationTime(Math.floor(Date.now() / 1000) + (claims.ttlSeconds ?? 3600))
    .sign(new TextEncoder().encode(secret));
}

/** POSTs one operation; sends `Authorization: Bearer <token>` when a token is given. */
export async function postGraphQL<T>(url: string, query: string, variables?: Record<string, unknown>, token?: string | null): Promise<GraphQLResponse<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as GraphQLResponse<T>;
  return { ...body, status: res.status };
}

/**
 * Subscribes over graphql-ws and resolves once the server reports one more live listener
 * (`listenerCount`, e.g. `() => server.listenerCount(channel)`): events published after that reach it.
 */
export async function openSubscription(
  wsUrl: string,
  listenerCount: () => number,
  query: string,
  variables?: Record<string, unknown>,
  token?: string | null,
): Promise<Subscription & { client: Client }> {
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
  });
  const events: any[] = [];
  const errors: unknown[] = [];
  let waiters: (() => void)[] = [];
  const before = listenerCount();
  const dispose = client.subscribe(
    { query, variables },
    {
      next: (value) => {
        if (value.errors) errors.push(value.errors);
        else events.push(value.data);
        waiters.forEach((w) => w());
      },
      error: (err) => {
        errors.push(err);
        waiters.forEach((w) => w());
      },
      complete: () => {},
    },
  );
  const deadline = Date.now() + 5000;
  while (listenerCount() <= before) {
    if (errors.length) throw new Error(`subscription failed: ${JSON.stringify(errors)}`);
    if (Date.now() > deadline) throw new Error('the server reported no new subscription listener');
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    client,
    events,
    errors,
    waitFor(count, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (events.length >= count) {
            clearTimeout(timer);
            waiters = waiters.filter((w) => w !== check);
            resolve(events);
          }
        };
        const timer = setTimeout(() => reject(new Error(`expected ${count} events, got ${events.length}: ${JSON.stringify(events)}`)), timeoutMs);
        waiters.push(check);
        check();
      });
    },
    close() {
      dispose();
      void client.dispose();
    },
  };
}

/**
 * Redis' own count of subscribed connections on a channel (one per server instance, at most). On a
 * cluster, the sharded subscriptions on the primary owning the channel's slot.
 */
export async function subscriberCount(redis: Redis, channel: string): Promise<number> {
  const client = redis as Redis | Cluster;
  const reply = isCluster(client)
    ? ((await (await primaryFor(client, channel)).call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number])
    : ((await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number]);
  return Number(reply[1]);
}

/** Starts a server for one test file, in a tenant of its own. */
export async function startTestServer(options: { config?: Partial<Config>; tenant?: string } = {}): Promise<TestServer> {
  const tenant = options.tenant ?? uniqueTenant('api');
  const config = testConfig({ ...options.config, worker: { ...testConfig().worker, tenants: [tenant], ...(options.config?.worker ?? {}) } });
  const server = await createServer(config);
  // as the server does for `default` at start: the built-in order machine exists before any request
  await server.engine.workflows.ensureOrderMachine(tenant);
  // typed Redis for the tests; on a cluster a Cluster client, which takes the same commands
  const redis = connectRedis(server.redisTarget, { maxRetriesPerRequest: 1 }) as Redis;
  const subscriptions: Subscription[] = [];
  const secret = config.auth.secret ?? TEST_JWT_SECRET;
  const admin = await testToken({ tenant, role: 'admin', ttlSeconds: 24 * 3600 }, secret);
  const tokenOf = (options?: AuthOption) => (options && 'token' in options ? options.token : admin);
  return {
    server,
    tenant,
    redis,
    gql: (query, variables, options) => postGraphQL(server.url, query, variables, tokenOf(options)),
    async ok<T>(query: string, variables?: Record<string, unknown>) {
      const res = await postGraphQL<T>(server.url, query, variables, tokenOf());
      if (res.errors || res.status !== 200) throw new Error(`expected success, got HTTP ${res.status}: ${JSON.stringify(res.errors)}`);
      return res.data as T;
    },
    snapshot: () => snapshotTenant(redis, tenant),
    token: (claims = {}) => testToken({ tenant, ...claims }, secret),
    async subscribe(query, variables, options) {
      const channel = /orderEvents/.test(query)
        ? server.engine.context.keys(tenant).ordersChannel()
        : server.engine.context.keys(tenant).workflowChannel();
      const sub = await openSubscription(server.wsUrl, () => server.listenerCount(channel), query, variables, tokenOf(options));
      subscriptions.push(sub);
      return sub;
    },
    async close() {
      subscriptions.forEach((s) => s.close());
      await server.stop();
      redis.disconnect();
    },
  };
}

export function uid(prefix = 'id'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Expects a GraphQL error with `code` and that the tenant's keys did not change. */
export async function expectGraphQLErrorWithoutWrites(
  t: TestServer,
  query: string,
  variables: Record<string, unknown> | undefined,
  code: string,
): Promise<GraphQLResponse> {
  const before = await t.snapshot();
  const res = await t.gql(query, variables);
  const codes = (res.errors ?? []).map((e) => e.extensions?.code);
  if (!codes.includes(code)) throw new Error(`expected ${code}, got ${JSON.stringify(res)}`);
  const after = await t.snapshot();
  if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error(`a rejected request (${code}) changed the tenant's keys`);
  return res;
}
