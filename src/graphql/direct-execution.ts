/**
 * Direct execution: a POST of one JSON operation that parses, validates and resolves is run here,
 * without Apollo's request pipeline; every other request goes to Apollo (src/server.ts). Apollo's
 * pipeline costs more CPU per request than the whole bare route making the same engine call (about
 * 55 µs a product read on this 2-core machine: a SHA-256 of every query, Accept negotiation,
 * cloned contexts, every plugin hook awaited at every stage), which held GraphQL to a third of
 * the bare route's throughput (npm run bench).
 *
 * What a client sees does not change: this path takes only requests whose every step it does as
 * Apollo does, and hands a request to Apollo, before anything ran, as soon as it would differ.
 *   - Taken: POST, content-type application/json (so Apollo's CSRF check passes), a body object with
 *     a string `query` of at most MAX_DIRECT_QUERY_CHARS, `variables` an object or absent,
 *     `operationName` a string or absent, no `extensions` (persisted queries), an Accept header that
 *     Apollo answers with JSON (the same negotiator decides), a document that parses and validates
 *     with Apollo's rules (NoIntrospection when introspection is off), and a query or mutation that
 *     the name selects.
 *   - Handed to Apollo: anything else, and then also a context that fails (UNAUTHENTICATED,
 *     RATE_LIMITED: the error the context function threw, not a second attempt), an operation over
 *     the limits, and variables that do not coerce (nothing has run then).
 *   - Answered here: Apollo's body (`errors`, `data`, `extensions`, JSON plus a newline), its error
 *     formatting (code INTERNAL_SERVER_ERROR by default, `extensions.http` moved to the response,
 *     then formatError), its content type, the 503 mapping, the request's metrics and log line.
 * The whole test suite runs through this path (and through Apollo for what it hands over);
 * test/api/direct-execution.test.ts compares the two byte for byte. HTTP_DIRECT_EXECUTION=false
 * sends every request to Apollo.
 */
import { GraphQLError, getOperationAST, parse, specifiedRules, validate, type DocumentNode, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema, type ValidationRule } from 'graphql';
import { HeaderMap, type HTTPGraphQLRequest, type HTTPGraphQLResponse } from '@apollo/server';
import Negotiator from 'negotiator';
import type { JitExecution } from './executor.js';
import type { OperationLimits } from './limits.js';
import { PARSE_OPTIONS } from './limits.js';
import { observeRequest } from './observe.js';
import { answersServiceUnavailable } from './http-plugins.js';
import type { Log } from '../log.js';

/** Longer documents go to Apollo (whose store is bounded by size): this cache holds query texts. */
const MAX_DIRECT_QUERY_CHARS = 8 * 1024;
const MAX_CACHED_DOCUMENTS = 1000;
const MAX_CACHED_ACCEPT_HEADERS = 100;

/** Apollo's media types (MEDIA_TYPES in @apollo/server), in the order it offers them. */
const APPLICATION_JSON = 'application/json; charset=utf-8';
const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json; charset=utf-8';
const JSON_GRAPHQL_CALLBACK = 'application/json; callbackSpec=1.0; charset=utf-8';

/** Apollo's NoIntrospection rule (used when introspection is off): fails on __schema and __type. */
const NoIntrospection: ValidationRule = (context) => ({
  Field(node) {
    if (node.name.value === '__schema' || node.name.value === '__type') context.reportError(new GraphQLError('introspection is off', { nodes: [node] }));
  },
});

export interface DirectExecutionOptions {
  schema: GraphQLSchema;
  jit: JitExecution;
  limits: OperationLimits;
  introspection: boolean;
  /** Apollo's formatError of this server (src/graphql/errors.ts). */
  formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError;
  log: Log;
}

/** A request this path takes: its validated document and what it asks. */
export interface DirectRequest {
  document: DocumentNode;
  type: 'query' | 'mutation';
  /** The operation's own name (what the request log shows). */
  name: string | null;
  operationName: string | undefined;
  variables: Record<string, unknown>;
  contentType: string;
  accept: string | undefined;
  requestId: string | null;
}

export interface DirectExecution {
  /** The request when this path takes it, else null (Apollo answers it). */
  take(request: HTTPGraphQLRequest, requestId: string | null): DirectRequest | null;
  /** Runs it with its context; null when Apollo must answer after all (limits, variable coercion). */
  run(request: DirectRequest, context: unknown): Promise<HTTPGraphQLResponse | null>;
  /** From now on Apollo answers everything (the server is stopping: Apollo refuses then). */
  stop(): void;
}

const isRecord = (o: unknown): o is Record<string, unknown> => !!o && typeof o === 'object' && !Array.isArray(o) && !Buffer.isBuffer(o);

export function createDirectExecution(options: DirectExecutionOptions): DirectExecution {
  const rules = options.introspection ? specifiedRules : [...specifiedRules, NoIntrospection];
  // query text -> its validated document, or null when it does not parse or validate (Apollo reports it)
  const documents = new Map<string, DocumentNode | null>();
  const contentTypes = new Map<string, string | null>();
  let stopped = false;

  function documentOf(query: string): DocumentNode | null {
    let document = documents.get(query);
    if (document !== undefined) return document;
    try {
      const parsed = parse(query, PARSE_OPTIONS);
      document = validate(options.schema, parsed, rules).length === 0 ? parsed : null;
    } catch {
      document = null;
    }
    if (documents.size >= MAX_CACHED_DOCUMENTS) documents.delete(documents.keys().next().value!);
    documents.set(query, document);
    return document;
  }

  /** Apollo's choice of content type for a single result (chooseContentTypeForSingleResultResponse). */
  function contentTypeFor(accept: string | undefined): string | null {
    if (!accept) return APPLICATION_JSON;
    let type = contentTypes.get(accept);
    if (type !== undefined) return type;
    type = new Negotiator({ headers: { accept } }).mediaType([APPLICATION_JSON, GRAPHQL_RESPONSE_JSON, JSON_GRAPHQL_CALLBACK]) || null;
    // the callback type is for Apollo's subscription callbacks: Apollo answers those
    if (type === JSON_GRAPHQL_CALLBACK) type = null;
    if (contentTypes.size >= MAX_CACHED_ACCEPT_HEADERS) contentTypes.clear();
    contentTypes.set(accept, type);
    return type;
  }

  return {
    take(request, requestId) {
      if (stopped || request.method !== 'POST') return null;
      if (request.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase() !== 'application/json') return null;
      const body = request.body;
      if (!isRecord(body) || typeof body.query !== 'string' || body.query.length > MAX_DIRECT_QUERY_CHARS) return null;
      if (body.extensions !== undefined) return null;
      if (body.variables !== undefined && body.variables !== null && !isRecord(body.variables)) return null;
      if (body.operationName !== undefined && body.operationName !== null && typeof body.operationName !== 'string') return null;
      const accept = request.headers.get('accept');
      const contentType = contentTypeFor(accept);
      if (!contentType) return null;
      const document = documentOf(body.query);
      if (!document) return null;
      const operationName = typeof body.operationName === 'string' ? body.operationName : undefined;
      const operation = getOperationAST(document, operationName);
      if (!operation || operation.operation === 'subscription') return null;
      const variables = isRecord(body.variables) ? body.variables : {};
      return { document, type: operation.operation, name: operation.name?.value ?? null, operationName, variables, contentType, accept, requestId };
    },

    async run(request, context) {
      if (options.limits.check(request.document, request.operationName, request.variables)) return null;
      const observation = observeRequest(options.log, request.requestId);
      const result = await options.jit.run(request.document, request.operationName, context, request.variables);
      if (!result) return null;
      const headers = new HeaderMap([['content-type', request.contentType]]);
      let status: number | undefined;
      const errors = result.errors?.map((error) => {
        const { formatted, http } = formatLikeApollo(error, options.formatError);
        if (http?.status) status = http.status;
        for (const [name, value] of http?.headers ?? []) headers.set(name, value);
        return formatted;
      });
      if (answersServiceUnavailable(errors, request.accept)) status = 503;
      observation.end({ type: request.type, name: request.name ?? request.operationName ?? null, errors: errors ?? [], status: status ?? 200, executor: 'direct' });
      const ordered: ExecutionResult<unknown, unknown> = { errors, data: result.data, extensions: result.extensions } as never;
      return { status, headers, body: { kind: 'complete', string: `${JSON.stringify(ordered)}\n` } };
    },

    stop() {
      stopped = true;
    },
  };
}

interface HttpHead {
  status?: number;
  headers?: Map<string, string>;
}

/** One execution error as Apollo formats it (normalizeAndFormatErrors, no stack traces). */
function formatLikeApollo(
  error: GraphQLError,
  formatError: DirectExecutionOptions['formatError'],
): { formatted: GraphQLFormattedError; http: HttpHead | null } {
  let http: HttpHead | null = null;
  try {
    const extensions: Record<string, unknown> = { ...error.extensions, code: error.extensions.code ?? 'INTERNAL_SERVER_ERROR' };
    const head = extensions.http as HttpHead | undefined;
    if (head && typeof head === 'object' && (!('status' in head) || typeof head.status === 'number') && (!('headers' in head) || head.headers instanceof Map)) {
      http = head;
      delete extensions.http;
    }
    return { formatted: formatError({ ...error.toJSON(), extensions }, error), http };
  } catch {
    return { formatted: { message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }, http };
  }
}
