import { Field, ID, InputType, Int } from 'type-graphql';
import { JSONScalar } from '../graphql/scalars.js';
import type { JsonObject } from '../core/validation.js';

@InputType()
export class TransitionRuleInput {
  @Field(() => String)
  from!: string;

  @Field(() => [String])
  to!: string[];
}

@InputType()
export class DefineStateMachineInput {
  @Field(() => ID)
  name!: string;

  @Field(() => String)
  initialState!: string;

  @Field(() => [String])
  states!: string[];

  @Field(() => [TransitionRuleInput])
  transitions!: TransitionRuleInput[];

  @Field(() => [String], { nullable: true, description: 'Default: the states with no outgoing transition.' })
  terminalStates?: string[] | null;
}

@InputType()
export class StartWorkflowInput {
  @Field(() => ID, { nullable: true, description: 'Generated when absent.' })
  id?: string | null;

  @Field(() => String)
  machine!: string;

  @Field(() => JSONScalar, { nullable: true, description: 'At most 16 KiB of JSON.' })
  metadata?: JsonObject | null;
}

@InputType()
export class TransitionWorkflowInput {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  to!: string;

  @Field(() => String, { nullable: true, description: 'Only move if the workflow is in this state (STATE_CONFLICT otherwise).' })
  from?: string | null;

  @Field(() => Int, { nullable: true, description: 'Only move if the workflow is at this version (VERSION_CONFLICT otherwise).' })
  expectedVersion?: number | null;

  @Field(() => JSONScalar, { nullable: true, description: 'Merged key by key into the workflow metadata.' })
  metadata?: JsonObject | null;
}
