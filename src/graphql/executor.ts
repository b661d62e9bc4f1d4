/**
 * A compiled executor for Apollo: graphql-jit compiles each validated operation once into a
 * JavaScript function, which then runs instead of graphql-js' `execute` (several times less work per
 * request than walking the AST). Plugged into Apollo through its gateway interface, the one way
 * Apollo 5 takes another executor; Apollo still parses, validates (both cached by document), builds
 * the context, formats errors (formatError) and writes the response.
 *
 * What clients see must not change, so:
 * - errors from the compiled function are rebuilt as graphql-js GraphQLErrors (same message,
 *   locations, path, originalError and extensions): Apollo's error formatting and unwrapResolverError
 *   read them exactly as they read graphql-js' own;
 * - whenever the compiled function did not execute (its variable coercion failed) the request runs
 *   through graphql-js' `execute`, so variable errors keep graphql-js' wording and AST nodes (from
 *   which Apollo derives BAD_USER_INPUT and the 400 status); nothing was resolved, so nothing runs
 *   twice;
 * - operations graphql-jit cannot compile, and subscriptions sent over HTTP, run through graphql-js.
 */
import { execute, GraphQLError, type DocumentNode, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import type { ApolloServerOptionsWithGateway, BaseContext } from '@apollo/server';

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

export function createJitExecutor(schema: GraphQLSchema): GatewayExecutor {
  const cache = new WeakMap<DocumentNode, Compiled>();

  function compiled(document: DocumentNode, operationName: string | undefined): CompiledQuery | null {
    let byName = cache.get(document);
    if (!byName) cache.set(document, (byName = new Map()));
    const key = operationName ?? '';
    let query = byName.get(key);
    if (query === undefined) {
      const result = compileQuery(schema, document, operationName, { disablingCapturingStackErrors: true });
      query = isCompiledQuery(result) ? result : null;
      byName.set(key, query);
    }
    return query;
  }

  return async (requestContext) => {
    const { document, operation, context } = requestContext;
    const variables = requestContext.request.variables ?? {};
    const operationName = requestContext.request.operationName ?? undefined;
    const viaGraphqlJs = () => execute({ schema, document, contextValue: context, variableValues: variables, operationName }) as Promise<ExecutionResult>;

    const query = operation && operation.operation !== 'subscription' ? compiled(document, operationName) : null;
    if (!query) return viaGraphqlJs();
    const result = await query.query(undefined, context, variables);
    // no data at all: the compiled function stopped before executing (variable coercion)
    if (!('data' in result)) return viaGraphqlJs();
    return result.errors ? { data: result.data, errors: result.errors.map(toGraphQLJsError) } : result;
  };
}

/**
 * Apollo's gateway interface over one fixed schema and the compiled executor: pass as `gateway`
 * instead of `schema` to `new ApolloServer`.
 */
export function jitGateway(schema: GraphQLSchema): Gateway {
  const executor = createJitExecutor(schema);
  return {
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: '' });
      return () => {};
    },
    async load() {
      return { schema, executor };
    },
    async stop() {},
  };
}
