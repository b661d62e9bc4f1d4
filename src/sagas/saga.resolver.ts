/**
 * GraphQL entry points for sagas and their data keys; one typed call each to
 * src/sagas/sagas.engine.ts (lua/sagas.lua).
 */
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context.js';
import { DataHashPage, DataSetPage, ExecuteSagaInput, Saga } from './saga.type.js';
import { DATA_PAGE_SIZE } from './sagas.engine.js';

@Resolver(() => Saga)
export class SagaResolver {
  @Query(() => Saga, { nullable: true })
  saga(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.sagas.get(tenant, id);
  }

  @Query(() => DataHashPage, { description: 'A page of a saga data hash (HSCAN: never the whole key at once).' })
  dataHash(
    @Arg('key', () => String) key: string,
    @Arg('first', () => Int, { nullable: true, defaultValue: DATA_PAGE_SIZE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.sagas.dataHash(tenant, key, { first: first ?? undefined, after });
  }

  @Query(() => DataSetPage, { description: 'A page of a saga data set (SSCAN: never the whole key at once).' })
  dataSet(
    @Arg('key', () => String) key: string,
    @Arg('first', () => Int, { nullable: true, defaultValue: DATA_PAGE_SIZE }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.sagas.dataSet(tenant, key, { first: first ?? undefined, after });
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
