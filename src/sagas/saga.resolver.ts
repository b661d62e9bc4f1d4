/**
 * GraphQL entry points for sagas and their data keys; one typed call each to
 * src/sagas/sagas.engine.ts (lua/sagas.lua).
 */
import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context.js';
import { JSONScalar } from '../graphql/scalars.js';
import { ExecuteSagaInput, Saga } from './saga.type.js';

@Resolver(() => Saga)
export class SagaResolver {
  @Query(() => Saga, { nullable: true })
  saga(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.sagas.get(tenant, id);
  }

  @Query(() => JSONScalar, { description: 'A saga data hash as an object ({} when absent).' })
  dataHash(@Arg('key', () => String) key: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.sagas.dataHash(tenant, key);
  }

  @Query(() => [String], { description: 'A saga data set, sorted ([] when absent).' })
  dataSet(@Arg('key', () => String) key: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.sagas.dataSet(tenant, key);
  }

  @Mutation(() => Saga, { description: 'Runs the steps in one atomic call; a failing step compensates every completed one.' })
  executeSaga(@Arg('input', () => ExecuteSagaInput) input: ExecuteSagaInput, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.sagas.execute(tenant, {
      id: input.id,
      steps: input.steps.map((s) => ({
        op: s.op,
        key: s.key,
        field: s.field ?? undefined,
        value: s.value ?? undefined,
        amount: s.amount ?? undefined,
        member: s.member ?? undefined,
        min: s.min ?? undefined,
        max: s.max ?? undefined,
      })),
    });
  }
}
