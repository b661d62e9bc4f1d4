/**
 * What an operator watches over HTTP, per request (called by the one request plugin in
 * src/graphql/http-plugins.ts, after the response status is final): the operation's duration into
 * atomflow_graphql_operation_duration_seconds (by type and bounded name), its error codes into
 * atomflow_graphql_errors_total, and one log line per request (request id, operation, duration,
 * status, error codes, executor).
 */
import type { GraphQLRequestContextWillSendResponse } from '@apollo/server';
import type { GraphQLContext } from './context.js';
import type { Log } from '../log.js';
import { graphqlErrors, graphqlOperationDuration, operationLabel } from '../metrics.js';

/** The header handleHttp sets on each request (and on its response). */
export const REQUEST_ID_HEADER = 'x-request-id';

export interface Observation {
  /** Records the finished request: duration, error codes, one log line. */
  end(outcome: RequestOutcome): void;
}

/** What the log line and metrics say of a finished request. */
export interface RequestOutcome {
  type: string;
  name: string | null;
  errors: readonly { extensions?: Record<string, unknown> }[];
  status: number;
  /** Who ran it: direct execution (src/graphql/direct-execution.ts) or Apollo's pipeline. */
  executor: 'direct' | 'apollo';
}

export function observeRequest(log: Log, requestId: string | null): Observation {
  const started = performance.now();
  return {
    end({ type, name, errors, status, executor }) {
      const seconds = (performance.now() - started) / 1000;
      graphqlOperationDuration.observe({ type, name: operationLabel(name) }, seconds);
      const codes = [...new Set(errors.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR')))];
      for (const e of errors) graphqlErrors.inc({ code: String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR') });
      log(`${type} ${name ?? '(anonymous)'} ${codes.length ? codes.join(',') : 'ok'}`, {
        msgType: 'request',
        requestId,
        operationType: type,
        operationName: name,
        durationMs: Math.round(seconds * 100_000) / 100,
        status,
        executor,
        errorCode: codes[0] ?? null,
        ...(codes.length > 1 ? { errorCodes: codes } : {}),
      });
    },
  };
}

/** The outcome of a request Apollo answered. */
export function apolloOutcome(rc: GraphQLRequestContextWillSendResponse<GraphQLContext>): RequestOutcome {
  const body = rc.response.body;
  return {
    type: rc.operation?.operation ?? 'unknown',
    name: rc.operationName ?? rc.request.operationName ?? null,
    errors: body.kind === 'single' ? (body.singleResult.errors ?? []) : [],
    status: rc.response.http.status ?? 200,
    executor: 'apollo',
  };
}
