/**
 * GraphQL entry points for state machines and workflows. Each resolver makes one typed engine call
 * (src/workflows/workflows.engine.ts), which runs one function of lua/workflows.lua.
 */
import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context.js';
import type { WorkflowEventMessage } from '../events/tenant-events.js';
import { HistoryPage, Workflow, WorkflowEvent, WorkflowPage } from './workflow.type.js';
import { StateMachine } from './state-machine.type.js';
import { DefineStateMachineInput, StartWorkflowInput, TransitionWorkflowInput } from './workflow.input.js';
import type { Workflow as EngineWorkflow } from './workflows.engine.js';


@Resolver(() => StateMachine)
export class StateMachineResolver {
  @Query(() => StateMachine, { nullable: true, description: 'The current version of a machine.' })
  stateMachine(@Arg('name', () => ID) name: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.workflows.machine(tenant, name);
  }

  @Query(() => [StateMachine], { description: 'The current version of every machine, by name.' })
  stateMachines(@Ctx() { engine, tenant }: GraphQLContext) {
    return engine.workflows.machines(tenant);
  }

  @Mutation(() => StateMachine, { description: 'Defines a machine, or its next version.' })
  defineStateMachine(@Arg('input', () => DefineStateMachineInput) input: DefineStateMachineInput, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.workflows.defineMachine(tenant, input);
  }
}

@Resolver(() => Workflow)
export class WorkflowResolver {
  @Query(() => Workflow, { nullable: true })
  workflow(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.workflows.get(tenant, id);
  }

  @Query(() => WorkflowPage, { description: 'Workflows of one machine or all, optionally in one state, most recently updated first.' })
  workflows(
    @Arg('machine', () => String, { nullable: true }) machine: string | null,
    @Arg('state', () => String, { nullable: true }) state: string | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 20 }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.workflows.list(tenant, { machine, state, first: first ?? undefined, after });
  }

  @FieldResolver(() => HistoryPage)
  async history(
    @Root() workflow: EngineWorkflow,
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ): Promise<HistoryPage> {
    const page = await engine.workflows.history(tenant, workflow.id, { first: first ?? undefined, after });
    return { entries: page.items, nextCursor: page.nextCursor };
  }

  @Mutation(() => Workflow)
  startWorkflow(@Arg('input', () => StartWorkflowInput) input: StartWorkflowInput, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.workflows.start(tenant, input);
  }

  @Mutation(() => Workflow, { description: 'Moves a workflow (orders included) to another state.' })
  transitionWorkflow(@Arg('input', () => TransitionWorkflowInput) input: TransitionWorkflowInput, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.workflows.transition(tenant, input);
  }

  @Subscription(() => WorkflowEvent, {
    description:
      'Every workflow start and transition, optionally of one workflow or one machine. With `after` (an eventId, or "0" for the oldest retained event) the events after it come first, then live ones, with no gap and none twice.',
    subscribe: ({
      args,
      context,
    }: {
      args: { workflowId?: string | null; machine?: string | null; after?: string | null };
      context: GraphQLContext;
    }) => context.events.workflowEvents(context.tenant, args),
  })
  workflowEvents(
    @Root() message: WorkflowEventMessage,
    @Arg('workflowId', () => ID, { nullable: true }) _workflowId: string | null,
    @Arg('machine', () => String, { nullable: true }) _machine: string | null,
    @Arg('after', () => String, { nullable: true, description: 'Resume after this eventId; "0" replays every retained event.' }) _after: string | null,
  ): WorkflowEvent {
    return { ...message, at: new Date(message.at) };
  }
}
