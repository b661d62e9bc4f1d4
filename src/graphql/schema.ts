/**
 * The GraphQL schema, built from the type-graphql resolver classes of every area. The same schema
 * object serves HTTP (Apollo) and WebSocket (graphql-ws); `npm run schema:emit` writes it to
 * schema.graphql, which is committed and checked by `npm run schema:check`.
 */
import 'reflect-metadata';
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema, type BuildSchemaOptions, type PubSub } from 'type-graphql';
import { dropIdentityResolvers } from './executor.js';
import { StateMachineResolver, WorkflowResolver } from '../workflows/workflow.resolver.js';
import { AccountResolver, OrderResolver, ProductResolver } from '../orders/order.resolver.js';
import { SagaResolver } from '../sagas/saga.resolver.js';
import { ScheduledTransitionResolver } from '../scheduler/scheduled-transition.resolver.js';
import { DateTimeScalar } from './scalars.js';

export const resolvers = [
  StateMachineResolver,
  WorkflowResolver,
  ProductResolver,
  AccountResolver,
  OrderResolver,
  SagaResolver,
  ScheduledTransitionResolver,
] as const;

export async function buildGraphQLSchema(pubSub: PubSub): Promise<GraphQLSchema> {
  const options: BuildSchemaOptions = {
    resolvers,
    pubSub,
    // inputs are validated by the engine (src/engine/validation.ts) and again in Lua
    validate: false,
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
  };
  const schema = await buildSchema(options);
  // plain property fields answer without a resolver call (src/graphql/executor.ts); only while
  // nothing (middleware, auth checker) runs for every field
  if (!options.globalMiddlewares?.length && !options.authChecker) dropIdentityResolvers(schema);
  return schema;
}

/** The SDL committed as schema.graphql: sorted, so it only changes when the API does. */
export async function printGraphQLSchema(): Promise<string> {
  const inert: PubSub = {
    publish: () => {},
    subscribe: () => {
      throw new Error('not for serving');
    },
  };
  const schema = await buildGraphQLSchema(inert);
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
