/**
 * The compiled GraphQL executor: graphql-jit compiles each validated operation once into a JavaScript
 * function, which then runs instead of graphql-js' `execute` (far less work per request than walking
 * the AST). Two pieces, wired in by src/server.ts and src/app/schema.ts:
 *
 * - `gateway`: Apollo's gateway interface (the one way Apollo 5 takes another executor) over the one
 *   schema. Apollo still does everything else per request: it parses and validates (cached by
 *   document), builds the context, runs every plugin (limits, metrics, the request log, status
 *   mapping), formats errors (formatError) and writes the response.
 * - `dropIdentityResolvers`: removes type-graphql's per-field resolvers that only read a property.
 *
 * What clients see does not change:
 * - errors from the compiled function are rebuilt as graphql-js GraphQLErrors (same message,
 *   locations, path, originalError and extensions), which Apollo's error formatting and
 *   unwrapResolverError read exactly as they read graphql-js' own;
 * - whenever the compiled function did not execute (its variable coercion failed) the request runs
 *   through graphql-js' `execute`, so variable errors keep graphql-js' wording and AST nodes (from
 *   which Apollo derives BAD_USER_INPUT and the 400 status); nothing was resolved, so nothing runs
 *   twice;
 * - operations graphql-jit cannot compile, and subscriptions sent over HTTP, run through graphql-js.
 */
import { execute, getOperationAST, GraphQLError, isObjectType, type DocumentNode, type ExecutionResult, type GraphQLSchema } from 'graphql';
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
function toGraphQLJsError(error: GraphQLError): GraphQLError {
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

export interface JitExecution {
  /** Pass as `gateway` (instead of `schema`) to `new ApolloServer`. */
  gateway: Gateway;
  /**
   * Runs a validated operation through its compiled function; null when it did not execute (no
   * compiled function for it, or its variables failed coercion), so graphql-js must report it.
   */
  run(document: DocumentNode, operationName: string | undefined, context: unknown, variables: Record<string, unknown>): Promise<ExecutionResult | null>;
}

export function createJitExecution(schema: GraphQLSchema): JitExecution {
  const compiledByDocument = new WeakMap<DocumentNode, Compiled>();

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

  async function run(document: DocumentNode, operationName: string | undefined, context: unknown, variables: Record<string, unknown>): Promise<ExecutionResult | null> {
    const query = compiled(document, operationName);
    if (!query) return null;
    const result = await query.query(undefined, context, variables);
    // no data at all: the compiled function stopped before executing (variable coercion)
    if (!('data' in result)) return null;
    return result.errors ? { data: result.data, errors: result.errors.map(toGraphQLJsError) } : result;
  }

  const executor: GatewayExecutor = async (requestContext) => {
    const { document, operation, context } = requestContext;
    const variables = requestContext.request.variables ?? {};
    const operationName = requestContext.request.operationName ?? undefined;
    const result = operation ? await run(document, operationName, context, variables) : null;
    return result ?? ((await execute({ schema, document, contextValue: context, variableValues: variables, operationName })) as ExecutionResult);
  };

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
  return { gateway, run };
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
