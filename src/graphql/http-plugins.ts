/**
 * The one Apollo request plugin of GraphQL over HTTP (WebSocket subscriptions do not pass through
 * Apollo). One plugin rather than one per concern: Apollo awaits every plugin's hooks at every stage
 * of every request, and each costs promises and microtask turns. Per request, in order:
 *   - a subscription operation sent over HTTP is a BAD_REQUEST (HTTP 400) that says where
 *     subscriptions are served, instead of reaching a resolver that cannot answer it;
 *   - a response whose errors include SERVICE_UNAVAILABLE (Redis unreachable, loading, out of
 *     memory) answers HTTP 503 when the client takes `application/graphql-response+json`, the media
 *     type whose status codes carry meaning (GraphQL over HTTP); with `application/json` it stays 200;
 *   - the operation limits (src/graphql/limits.ts) once the operation is validated;
 *   - the request's metrics and log line (src/graphql/observe.ts), once its status is final.
 */
import type { ApolloServerPlugin, GraphQLRequestContextWillSendResponse } from '@apollo/server';
import { GraphQLError, type DocumentNode } from 'graphql';
import { SERVICE_UNAVAILABLE } from './errors.js';
import type { GraphQLContext } from './context.js';
import { apolloOutcome, observeRequest, REQUEST_ID_HEADER } from './observe.js';
import type { Log } from '../log.js';

export const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json';

export interface HttpRequestPluginOptions {
  /** Where subscriptions are served (named in the error a subscription over HTTP gets). */
  wsPath: string;
  log: Log;
  /** QUERY_TOO_COMPLEX for an operation over the limits, else null. */
  checkLimits(document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown> | undefined): GraphQLError | null;
}

export function httpRequestPlugin(options: HttpRequestPluginOptions): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart(start) {
      const observation = observeRequest(options.log, start.request.http?.headers.get(REQUEST_ID_HEADER) ?? null);
      return {
        async didResolveOperation({ operation, document, request }) {
          if (operation?.operation === 'subscription') {
            throw new GraphQLError(`subscriptions are served over WebSocket (graphql-ws protocol) at ${options.wsPath}, not over HTTP`, {
              extensions: { code: 'BAD_REQUEST', http: { status: 400 } },
            });
          }
          const tooComplex = options.checkLimits(document, request.operationName, request.variables);
          if (tooComplex) throw tooComplex;
        },
        async willSendResponse(rc) {
          setServiceUnavailableStatus(rc);
          observation.end(apolloOutcome(rc));
        },
      };
    },
  };
}

function setServiceUnavailableStatus({ request, response }: GraphQLRequestContextWillSendResponse<GraphQLContext>): void {
  if (response.body.kind !== 'single') return;
  if (answersServiceUnavailable(response.body.singleResult.errors, request.http?.headers.get('accept'))) response.http.status = 503;
}

/** Whether a response with these errors answers 503 (SERVICE_UNAVAILABLE, to a graphql-response+json client). */
export function answersServiceUnavailable(errors: readonly { extensions?: Record<string, unknown> }[] | undefined, accept: string | undefined): boolean {
  return !!errors?.some((e) => e.extensions?.code === SERVICE_UNAVAILABLE) && prefersGraphQLResponseJson(accept);
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
