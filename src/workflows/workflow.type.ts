import { Field, ID, Int, ObjectType } from 'type-graphql';
import { DateTimeScalar, JSONScalar } from '../graphql/scalars.js';
import type { JsonObject } from '../core/validation.js';

@ObjectType({ description: 'A running instance of a state machine.' })
export class Workflow {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  machine!: string;

  @Field(() => Int, { description: 'The machine version this workflow started with and keeps.' })
  machineVersion!: number;

  @Field(() => String)
  state!: string;

  @Field(() => Int, { description: 'Starts at 1 and grows by one with every transition.' })
  version!: number;

  @Field(() => JSONScalar)
  metadata!: JsonObject;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => DateTimeScalar)
  updatedAt!: Date;

  @Field(() => [String], { description: 'The states this workflow may move to now.' })
  allowedTransitions!: string[];
}

@ObjectType()
export class HistoryEntry {
  @Field(() => String, { nullable: true, description: 'null for the entry that started the workflow.' })
  from!: string | null;

  @Field(() => String)
  to!: string;

  @Field(() => DateTimeScalar)
  at!: Date;

  @Field(() => Int)
  version!: number;

  @Field(() => JSONScalar, { description: 'The metadata given with this transition.' })
  metadata!: JsonObject;
}

@ObjectType({ description: 'A page of history, oldest first.' })
export class HistoryPage {
  @Field(() => [HistoryEntry])
  entries!: HistoryEntry[];

  @Field(() => String, { nullable: true, description: 'Pass as `after` for the next page; null on the last.' })
  nextCursor!: string | null;
}

@ObjectType({ description: 'A page of workflows, most recently updated first.' })
export class WorkflowPage {
  @Field(() => [Workflow])
  items!: Workflow[];

  @Field(() => String, { nullable: true })
  nextCursor!: string | null;
}

@ObjectType({ description: 'A workflow started or moved: one entry of the tenant event stream.' })
export class WorkflowEvent {
  @Field(() => ID, { description: 'The event stream entry id.' })
  eventId!: string;

  @Field(() => ID)
  workflowId!: string;

  @Field(() => String)
  machine!: string;

  @Field(() => String, { nullable: true })
  from!: string | null;

  @Field(() => String)
  to!: string;

  @Field(() => Int)
  version!: number;

  @Field(() => DateTimeScalar)
  at!: Date;

  @Field(() => JSONScalar)
  metadata!: JsonObject;
}
