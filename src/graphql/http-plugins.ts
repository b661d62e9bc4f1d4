/**
 * Apollo plugins for GraphQL over HTTP (WebSocket subscriptions do not pass through Apollo):
 *   - a subscription operation sent over HTTP is a BAD_REQUEST (HTTP 400) that says where
 *     subscriptions are served, instead of reaching a resolver that cannot answer it;
 *   - a response whose errors include SERVICE_UNAVAILABLE (Redis unreachable, loading, out of
 *     memory) answers HTTP 503 when the client takes `application/graphql-response+json`, the media
 *     type whose status codes carry meaning (GraphQL over HTTP); with `application/json` it stays 200.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import { GraphQLError } from 'graphql';
import { SERVICE_UNAVAILABLE } from './errors.js';

export const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json';

export function rejectSubscriptionsOverHttp<C extends object>(wsPath: string): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ operation }) {
          if (operation?.operation !== 'subscription') return;
          throw new GraphQLError(
            `subscriptions are served over WebSocket (graphql-ws protocol) at ${wsPath}, not over HTTP`,
            { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } },
          );
        },
      };
    },
  };
}

export function serviceUnavailableStatus<C extends object>(): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ request, response }) {
          if (response.body.kind !== 'single') return;
          const errors = response.body.singleResult.errors ?? [];
          if (!errors.some((e) => e.extensions?.code === SERVICE_UNAVAILABLE)) return;
          if (prefersGraphQLResponseJson(request.http?.headers.get('accept'))) response.http.status = 503;
        },
      };
    },
  };
}

/**
 * Whether Apollo answers this Accept header with application/graphql-response+json rather than
 * application/json: it must be listed by name with q > 0 and rank at least as high as application/json
 * (by q, then by being named rather than matched by a wildcard, then by coming first).
 */
export function prefersGraphQLResponseJson(accept: string | undefined): boolean {
  if (!accept) return false;
  const entries = accept.split(',').map((part, index) => {
    const [type = '', ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return { type, q: q ? Number(q.slice(2)) : 1, index };
  });
  const gr = entries.find((e) => e.type === GRAPHQL_RESPONSE_JSON);
  if (!gr || !(gr.q > 0)) return false;
  const json = entries.find((e) => e.type === 'application/json');
  if (json) return gr.q > json.q || (gr.q === json.q && gr.index < json.index);
  const wildcard = entries.find((e) => e.type === 'application/*' || e.type === '*/*');
  return !wildcard || gr.q >= wildcard.q;
}
