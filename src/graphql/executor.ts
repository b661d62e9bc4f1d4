/**
 * The compiled GraphQL executor: graphql-jit compiles each validated operation once into a JavaScript
 * function, which then runs instead of graphql-js' `execute` (far less work per request than walking
 * the AST). Three pieces, wired in by src/server.ts and src/graphql/schema.ts:
 *
 * - `gateway`: Apollo's gateway interface (the one way Apollo 5 takes another executor) over the one
 *   schema. Apollo still parses and validates (cached by document), builds the context, formats errors
 *   (formatError) and writes the response. The executor records each document Apollo validated.
 * - `tryFastPath`: a POST (application/json) of a query or mutation whose text Apollo validated before
 *   runs its compiled function directly, skipping Apollo's per-request pipeline (hashing, content
 *   negotiation, request context, plugins), and is answered as Apollo answers it: status 200, the same
 *   content type and `JSON.stringify({ errors, data }) + '\n'` body, errors formatted like Apollo's
 *   normalizeAndFormatErrors followed by the same formatError. Anything else (GET, other accept
 *   headers or body fields, a new document, variable errors, context creation failure) goes to Apollo;
 *   test/api/fast-path.test.ts sends every kind of answer twice and compares the bytes.
 * - `dropIdentityResolvers`: removes type-graphql's per-field resolvers that only read a property.
 *
 * What clients see does not change:
 * - errors from the compiled function are rebuilt as graphql-js GraphQLErrors (same message,
 *   locations, path, originalError and extensions), which Apollo's error formatting and
 *   unwrapResolverError read exactly as they read graphql-js' own;
 * - whenever the compiled function did not execute (its variable coercion failed) the request runs
 *   through graphql-js' `execute` (or Apollo, on the fast path), so variable errors keep graphql-js'
 *   wording and AST nodes (from which Apollo derives BAD_USER_INPUT and the 400 status); nothing was
 *   resolved, so nothing runs twice;
 * - operations graphql-jit cannot compile, and subscriptions sent over HTTP, run through graphql-js.
 */
import { execute, getOperationAST, GraphQLError, isObjectType, type DocumentNode, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import type { ApolloServerOptionsWithGateway, BaseContext } from '@apollo/server';
import { getMetadataStorage } from 'type-graphql';

type Gateway = ApolloServerOptionsWithGateway<BaseContext>['gateway'];
type GatewayExecutor = Awaited<ReturnType<Gateway['load']>>['executor'];

/** Compiled queries by document (Apollo's document store hands back the same DocumentNode per query text), then operation name. */
type Compiled = Map<string, CompiledQuery | null>;

/**
 * graphql-js' GraphQLError for one of graphql-jit's (which carry locations directly instead of AST
 * nodes); a graphql-js error is returned as it is.
 */
export function toGraphQLJsError(error: GraphQLError): GraphQLError {
  if (Object.getPrototypeOf(error) === GraphQLError.prototype) return error;
  const rebuilt = new GraphQLError(error.message, {
    path: error.path,
    originalError: error.originalError ?? undefined,
    extensions: error.extensions ?? undefined,
  });
  // graphql-js computes locations from AST nodes, which graphql-jit does not keep
  (rebuilt as { locations: GraphQLError['locations'] }).locations = error.locations;
  return rebuilt;
}

/** Apollo's formatError: the error as Apollo formats it, and the error itself. */
export type FormatError = (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;

/** A request as the fast path sees it: method, two headers and the parsed body. */
export interface FastPathRequest {
  method: string | undefined;
  contentType: string | undefined;
  accept: string | undefined;
  body: unknown;
}

export interface FastPathResponse {
  contentType: string;
  body: string;
}

/** Documents Apollo has parsed and validated, by query text; bounded, first come first kept. */
const MAX_VALIDATED_DOCUMENTS = 1000;
/** Apollo's content type of a single result, for the accept headers the fast path takes. */
const CONTENT_TYPE_FOR_ACCEPT = new Map<string | undefined, string>([
  [undefined, 'application/json; charset=utf-8'],
  ['', 'application/json; charset=utf-8'],
  ['*/*', 'application/json; charset=utf-8'],
  ['application/json', 'application/json; charset=utf-8'],
  ['application/graphql-response+json', 'application/graphql-response+json; charset=utf-8'],
]);
const BODY_FIELDS = new Set(['query', 'variables', 'operationName']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface JitExecution {
  /** Pass as `gateway` (instead of `schema`) to `new ApolloServer`. */
  gateway: Gateway;
  /**
   * Answers a plain POST of a query or mutation whose text Apollo has already validated, as Apollo
   * would answer it (same status 200, content type and body, errors formatted by `formatError`),
   * without Apollo's per-request pipeline; null when the request is anything else, and then Apollo
   * answers it. Never null once a resolver has run.
   */
  tryFastPath(request: FastPathRequest, context: () => unknown): Promise<FastPathResponse | null>;
  /** Stops the fast path (the server is stopping: Apollo answers what still arrives). */
  disable(): void;
}

export function createJitExecution(schema: GraphQLSchema, options: { formatError: FormatError }): JitExecution {
  const compiledByDocument = new WeakMap<DocumentNode, Compiled>();
  const validated = new Map<string, DocumentNode>();
  let enabled = true;

  function compiled(document: DocumentNode, operationName: string | undefined): CompiledQuery | null {
    let byName = compiledByDocument.get(document);
    if (!byName) compiledByDocument.set(document, (byName = new Map()));
    const key = operationName ?? '';
    let query = byName.get(key);
    if (query === undefined) {
      const operation = getOperationAST(document, operationName);
      const result = operation && operation.operation !== 'subscription' ? compileQuery(schema, document, operationName, { disablingCapturingStackErrors: true }) : null;
      query = result && isCompiledQuery(result) ? result : null;
      byName.set(key, query);
    }
    return query;
  }

  const executor: GatewayExecutor = async (requestContext) => {
    const { document, operation, context, source } = requestContext;
    const variables = requestContext.request.variables ?? {};
    const operationName = requestContext.request.operationName ?? undefined;
    const viaGraphqlJs = () => execute({ schema, document, contextValue: context, variableValues: variables, operationName }) as Promise<ExecutionResult>;

    const query = operation ? compiled(document, operationName) : null;
    if (!query) return viaGraphqlJs();
    if (source !== undefined && !validated.has(source) && validated.size < MAX_VALIDATED_DOCUMENTS) validated.set(source, document);
    const result = await query.query(undefined, context, variables);
    // no data at all: the compiled function stopped before executing (variable coercion)
    if (!('data' in result)) return viaGraphqlJs();
    return result.errors ? { data: result.data, errors: result.errors.map(toGraphQLJsError) } : result;
  };

  /** As Apollo's normalizeAndFormatErrors (errorNormalize.js) with stack traces off. */
  function formatErrors(errors: readonly GraphQLError[]): GraphQLFormattedError[] {
    return errors.map((error) => {
      try {
        const extensions: Record<string, unknown> = { ...error.extensions, code: error.extensions.code ?? 'INTERNAL_SERVER_ERROR' };
        delete extensions.http;
        return options.formatError({ ...error.toJSON(), extensions }, error);
      } catch {
        return { message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } };
      }
    });
  }

  async function tryFastPath(request: FastPathRequest, context: () => unknown): Promise<FastPathResponse | null> {
    if (!enabled || request.method !== 'POST' || request.contentType?.split(';')[0]?.trim().toLowerCase() !== 'application/json') return null;
    const contentType = CONTENT_TYPE_FOR_ACCEPT.get(request.accept?.trim());
    const body = request.body;
    if (!contentType || !isPlainObject(body) || typeof body.query !== 'string') return null;
    for (const field in body) if (!BODY_FIELDS.has(field)) return null;
    const { variables, operationName } = body;
    if (variables != null && !isPlainObject(variables)) return null;
    if (operationName != null && typeof operationName !== 'string') return null;
    const document = validated.get(body.query);
    if (!document) return null;
    const query = compiled(document, operationName ?? undefined);
    if (!query) return null;
    let contextValue: unknown;
    try {
      contextValue = await context();
    } catch {
      return null; // Apollo answers context creation failures
    }
    // from here on resolvers may run: always answer
    const result = await query.query(undefined, contextValue, variables ?? {});
    if (!('data' in result)) return null; // variable coercion failed before anything ran
    const errors = result.errors ? formatErrors(result.errors.map(toGraphQLJsError)) : undefined;
    return { contentType, body: `${JSON.stringify({ errors, data: result.data })}\n` };
  }

  const gateway: Gateway = {
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: '' });
      return () => {};
    },
    async load() {
      return { schema, executor };
    },
    async stop() {},
  };
  return {
    gateway,
    tryFastPath,
    disable: () => {
      enabled = false;
    },
  };
}

/**
 * type-graphql gives every plain property field a resolver that runs the field's middlewares and
 * answers `root[property]`; with no middlewares anywhere that is exactly graphql's default resolver,
 * which graphql-jit inlines instead of calling a function per field (per list item). Removes those
 * resolvers from `schema`; call it only when the schema was built with no global middlewares and no
 * auth checker. A field keeps its resolver when it has middlewares or roles, is renamed
 * (`@Field({ name })`), or any @FieldResolver anywhere has its name. Returns how many were removed.
 */
export function dropIdentityResolvers(schema: GraphQLSchema): number {
  const storage = getMetadataStorage();
  const resolvedNames = new Set(storage.fieldResolvers.map((r) => r.schemaName));
  const classes = new Map(storage.objectTypes.map((o) => [o.name, o]));
  const roots = new Set([schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]);
  let removed = 0;
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || roots.has(type) || type.name.startsWith('__')) continue;
    const cls = classes.get(type.name);
    if (!cls) continue;
    const metas = cls.fields ?? storage.fields.filter((f) => f.target === cls.target);
    for (const field of Object.values(type.getFields())) {
      if (!field.resolve || resolvedNames.has(field.name)) continue;
      const own = metas.filter((m) => m.schemaName === field.name);
      const meta = own[0];
      if (own.length !== 1 || !meta || meta.name !== meta.schemaName || meta.middlewares?.length || meta.roles) continue;
      field.resolve = undefined;
      removed++;
    }
  }
  return removed;
}
