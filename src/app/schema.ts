/**
 * The GraphQL schema, built from the type-graphql resolver classes of every area. The same schema
 * object serves HTTP (Apollo) and WebSocket (graphql-ws); `npm run schema:emit` writes it to
 * schema.graphql, which is committed and checked by `npm run schema:check`.
 */
import 'reflect-metadata';
import { getNullableType, lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema, type BuildSchemaOptions, type PubSub } from 'type-graphql';
import { dropIdentityResolvers } from '../graphql/executor.js';
import { StateMachineResolver, WorkflowResolver } from '../workflows/workflow.resolver.js';
import { AccountResolver, OrderResolver, ProductResolver } from '../orders/order.resolver.js';
import { SagaResolver } from '../sagas/saga.resolver.js';
import { ScheduledTransitionResolver } from '../scheduler/scheduled-transition.resolver.js';
import { DateTimeScalar } from '../graphql/scalars.js';
import { applyPolicy } from '../auth/policy.js';

export const resolvers = [
  StateMachineResolver,
  WorkflowResolver,
  ProductResolver,
  AccountResolver,
  OrderResolver,
  SagaResolver,
  ScheduledTransitionResolver,
] as const;

/**
 * Subscriptions take their events from the context's relay (src/events/), through each
 * @Subscription's `subscribe`; type-graphql still insists on a pubSub, so it gets one that says so.
 */
const noTopics: PubSub = {
  publish: () => {
    throw new Error('atomflow publishes from Lua only');
  },
  subscribe: () => {
    throw new Error('subscriptions use src/events/, not topics');
  },
};

/** The schema, with the authorization rule of every root field applied (src/auth/policy.ts). */
export async function buildGraphQLSchema(): Promise<GraphQLSchema> {
  const options: BuildSchemaOptions = {
    resolvers,
    pubSub: noTopics,
    // inputs are validated by the engine (src/core/validation.ts) and again in Lua
    validate: false,
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
  };
  const schema = await buildSchema(options);
  // plain property fields answer without a resolver call (src/graphql/executor.ts); only while
  // nothing (middleware, auth checker) runs for every field: the policy wraps root fields only
  if (!options.globalMiddlewares?.length && !options.authChecker) dropIdentityResolvers(schema);
  return applyPolicy(nullableMutations(schema));
}

/**
 * Every mutation root field is nullable (as in GitHub's and Shopify's APIs): when one of several
 * mutations in a request fails, only its own field is null, and the client sees which ones committed.
 */
function nullableMutations(schema: GraphQLSchema): GraphQLSchema {
  for (const field of Object.values(schema.getMutationType()?.getFields() ?? {})) {
    field.type = getNullableType(field.type);
  }
  return schema;
}

/** The SDL committed as schema.graphql: sorted, so it only changes when the API does. */
export async function printGraphQLSchema(): Promise<string> {
  const schema = await buildGraphQLSchema();
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
