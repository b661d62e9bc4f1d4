/**
 * GraphQL entry points for scheduled transitions; one typed call each to
 * src/scheduler/scheduler.engine.ts (lua/scheduler.lua). The worker (src/worker/) applies them.
 */
import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context.js';
import { ScheduledTransition, ScheduleTransitionInput } from './scheduled-transition.type.js';

@Resolver(() => ScheduledTransition)
export class ScheduledTransitionResolver {
  @Query(() => ScheduledTransition, { nullable: true })
  scheduledTransition(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.scheduler.get(tenant, id);
  }

  @Mutation(() => ScheduledTransition)
  scheduleTransition(@Arg('input', () => ScheduleTransitionInput) input: ScheduleTransitionInput, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.scheduler.schedule(tenant, input);
  }

  @Mutation(() => ScheduledTransition, { description: 'Cancels a PENDING entry (STATE_CONFLICT once it has run).' })
  cancelScheduledTransition(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.scheduler.cancel(tenant, id);
  }
}
