/**
 * graphql-ws' onSubscribe hook: parses and validates one `subscribe` message's document itself, so
 * that a syntax or validation error fails that operation alone (an `error` message with the code, as
 * over HTTP) instead of throwing inside graphql-ws, which closes the whole socket with 4500.
 * Parsed documents are cached by their text: many clients send the same few subscription documents,
 * and a shared document costs nothing per subscriber.
 */
import { GraphQLError, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql';
import type { ExecutionArgs } from 'graphql';
import type { SubscribePayload } from 'graphql-ws';

const MAX_CACHED_DOCUMENTS = 500;
const documents = new WeakMap<GraphQLSchema, Map<string, DocumentNode>>();

function withCode(error: GraphQLError, code: string): GraphQLError {
  return new GraphQLError(error.message, { nodes: error.nodes, source: error.source, positions: error.positions, extensions: { code } });
}

export function parseSubscribeOperation(schema: GraphQLSchema, payload: SubscribePayload): ExecutionArgs | readonly GraphQLError[] {
  let cache = documents.get(schema);
  if (!cache) documents.set(schema, (cache = new Map()));
  let document = cache.get(payload.query);
  if (!document) {
    try {
      document = parse(payload.query);
    } catch (err) {
      if (err instanceof GraphQLError) return [withCode(err, 'GRAPHQL_PARSE_FAILED')];
      throw err;
    }
    const errors = validate(schema, document);
    if (errors.length > 0) return errors.map((e) => withCode(e, 'GRAPHQL_VALIDATION_FAILED'));
    if (cache.size >= MAX_CACHED_DOCUMENTS) cache.delete(cache.keys().next().value!);
    cache.set(payload.query, document);
  }
  return {
    schema,
    document,
    operationName: payload.operationName ?? null,
    variableValues: payload.variables ?? null,
  };
}
