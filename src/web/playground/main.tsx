/**
 * The playground: GraphiQL from npm, bundled (no CDN, no telemetry). Queries and mutations go over
 * HTTP POST, subscriptions over graphql-ws on the same URL; the docs explorer reads the schema by
 * introspection. The headers editor starts with the development token when the server has one.
 */
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import './playground.css';
import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createClient } from 'graphql-ws';
import { createRoot } from 'react-dom/client';
import { authorization, httpUrl, loadConfig, wsUrl } from '../shared/api.js';

const DEFAULT_QUERY = `# atomflow playground. Run with Ctrl-Enter; the docs are in the book icon on the left.
# Subscriptions work here too: run one, then place an order in another tab.

query Machines {
  stateMachines { name version states terminalStates }
  workflows(first: 10) { items { id machine state version updatedAt } nextCursor }
}

subscription OrderFeed {
  orderEvents { eventId type orderId userId state totalCents at }
}
`;

const config = await loadConfig();
const auth = authorization(config);
const initialHeaders = auth ? JSON.stringify({ Authorization: auth }, null, 2) : '';

/**
 * One fetcher per Authorization value: graphql-ws sends credentials once, in connection_init, so
 * a subscription run with other headers needs a socket of its own.
 */
const fetchers = new Map<string, Fetcher>();
function fetcherFor(authorizationHeader: string | undefined): Fetcher {
  const key = authorizationHeader ?? '';
  let fetcher = fetchers.get(key);
  if (!fetcher) {
    const wsClient = createClient({
      url: wsUrl(config),
      lazy: true,
      retryAttempts: 5,
      connectionParams: () => (authorizationHeader ? { authorization: authorizationHeader } : {}),
    });
    fetcher = createGraphiQLFetcher({ url: httpUrl(config), wsClient, headers: authorizationHeader ? { Authorization: authorizationHeader } : undefined });
    fetchers.set(key, fetcher);
  }
  return fetcher;
}

const fetcher: Fetcher = (params, opts) => {
  const headers = opts?.headers ?? {};
  const name = Object.keys(headers).find((h) => h.toLowerCase() === 'authorization');
  // GraphiQL's own first requests (the schema's introspection) may come before the headers editor is
  // read: without an Authorization header of their own they go with the development token
  return fetcherFor(name ? String(headers[name]) : (auth ?? undefined))(params, opts);
};

createRoot(document.getElementById('root')!).render(
  <GraphiQL
    fetcher={fetcher}
    defaultQuery={DEFAULT_QUERY}
    initialHeaders={initialHeaders || undefined}
    defaultHeaders={initialHeaders || undefined}
    defaultEditorToolsVisibility={initialHeaders ? 'headers' : false}
  >
    <GraphiQL.Logo>
      <a className="atomflow-logo" href="/">
        atomflow
      </a>
    </GraphiQL.Logo>
  </GraphiQL>,
);
