import { Field, ID, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { DateTimeScalar, JSONScalar } from '../graphql/scalars.js';
import type { JsonObject } from '../engine/validation.js';

export enum ScheduleStatus {
  PENDING = 'PENDING',
  DONE = 'DONE',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
}
registerEnumType(ScheduleStatus, { name: 'ScheduleStatus' });

@ObjectType({ description: 'A transition to apply at a time; each entry takes effect exactly once.' })
export class ScheduledTransition {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  workflowId!: string;

  @Field(() => String)
  to!: string;

  @Field(() => DateTimeScalar)
  runAt!: Date;

  @Field(() => ScheduleStatus)
  status!: ScheduleStatus;

  @Field(() => String, {
    nullable: true,
    description:
      'Why it FAILED: an error code and message, e.g. INVALID_TRANSITION or ATTEMPTS_EXHAUSTED; for a PENDING entry, the error of its last failed attempt.',
  })
  error!: string | null;

  @Field(() => DateTimeScalar, { nullable: true })
  executedAt!: Date | null;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => Int, { description: 'Failed attempts without an atomflow error code; at WORKER_MAX_ATTEMPTS the entry is FAILED.' })
  attempts!: number;
}

@ObjectType({ description: 'A page of scheduled transitions, newest first (by their last status change).' })
export class ScheduledTransitionPage {
  @Field(() => [ScheduledTransition])
  items!: ScheduledTransition[];

  @Field(() => String, { nullable: true })
  nextCursor!: string | null;
}

@InputType()
export class ScheduleTransitionInput {
  @Field(() => ID, {
    nullable: true,
    description: 'Idempotency key (generated when absent): the same id with the same parameters answers the stored entry.',
  })
  id?: string | null;

  @Field(() => ID)
  workflowId!: string;

  @Field(() => String, { description: 'Must be a state of the machine; whether it is allowed is decided when it runs.' })
  to!: string;

  @Field(() => DateTimeScalar)
  runAt!: Date;

  @Field(() => JSONScalar, { nullable: true })
  metadata?: JsonObject | null;
}
