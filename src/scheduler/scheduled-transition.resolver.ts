/**
 * GraphQL entry points for scheduled transitions; one typed call each to
 * src/scheduler/scheduler.engine.ts (lua/scheduler.lua). The worker (src/worker/) applies them.
 */
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context.js';
import { ScheduledTransition, ScheduledTransitionPage, ScheduleStatus, ScheduleTransitionInput } from './scheduled-transition.type.js';

@Resolver(() => ScheduledTransition)
export class ScheduledTransitionResolver {
  @Query(() => ScheduledTransition, { nullable: true })
  scheduledTransition(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.scheduler.get(tenant, id);
  }

  @Query(() => ScheduledTransitionPage, { description: 'Entries, newest first (by their last status change), optionally of one status.' })
  scheduledTransitions(
    @Arg('status', () => ScheduleStatus, { nullable: true }) status: ScheduleStatus | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 20 }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.scheduler.list(tenant, { status, first: first ?? undefined, after });
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
