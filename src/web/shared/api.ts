/**
 * What both pages share: the server's /ui-config.json, the Authorization header, POSTing GraphQL
 * and a graphql-ws client that reconnects forever and reports its state. Only the public GraphQL API
 * is used, like any other client.
 */
import { createClient, type Client } from 'graphql-ws';

export interface UiConfig {
  graphqlPath: string;
  playground: boolean;
  /** A development token from the server (outside production), or null. */
  devToken: string | null;
}

const TOKEN_KEY = 'atomflow.token';

export async function loadConfig(): Promise<UiConfig> {
  try {
    const res = await fetch('/ui-config.json', { cache: 'no-store' });
    if (res.ok) return (await res.json()) as UiConfig;
  } catch {
    // served without the config endpoint: defaults below
  }
  return { graphqlPath: '/graphql', playground: true, devToken: null };
}

/** A token the user pasted into the board wins over the server's development token. */
export function savedToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

export function authorization(config: UiConfig): string | null {
  const token = savedToken() ?? config.devToken;
  return token ? `Bearer ${token}` : null;
}

export function httpUrl(config: UiConfig): string {
  return new URL(config.graphqlPath, location.href).href;
}

export function wsUrl(config: UiConfig): string {
  const url = new URL(config.graphqlPath, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export interface GraphQLError {
  message: string;
  extensions?: { code?: string };
}

export class ApiError extends Error {
  constructor(
    readonly errors: GraphQLError[],
    readonly code: string,
  ) {
    super(errors.map((e) => e.message).join('; '));
  }
}

export async function gql<T>(config: UiConfig, query: string, variables?: Record<string, unknown>): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const auth = authorization(config);
  if (auth) headers.authorization = auth;
  const res = await fetch(httpUrl(config), { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const body = (await res.json()) as { data?: T; errors?: GraphQLError[] };
  if (body.errors?.length) throw new ApiError(body.errors, body.errors[0]?.extensions?.code ?? 'UNKNOWN');
  return body.data as T;
}

export type ConnectionState = 'connecting' | 'connected' | 'disconnected';

/**
 * A graphql-ws client that retries forever (backing off up to 5 s) and tells `onState` about every
 * change; `onReconnected` runs when the socket is back after having been lost, so a page can reload
 * what it may have missed meanwhile.
 */
export function liveClient(
  config: UiConfig,
  onState: (state: ConnectionState, detail?: string) => void,
  onReconnected: () => void,
): Client {
  let wasConnected = false;
  return createClient({
    url: wsUrl(config),
    lazy: false,
    keepAlive: 10_000,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(5000, 300 * 2 ** retries))),
    connectionParams: () => {
      const auth = authorization(config);
      return auth ? { authorization: auth } : {};
    },
    on: {
      connecting: () => onState(wasConnected ? 'disconnected' : 'connecting'),
      connected: () => {
        onState('connected');
        if (wasConnected) onReconnected();
        wasConnected = true;
      },
      closed: (event) => {
        const e = event as { code?: number; reason?: string };
        onState('disconnected', e.code ? `closed with ${e.code}${e.reason ? ` ${e.reason}` : ''}` : undefined);
      },
    },
  });
}
