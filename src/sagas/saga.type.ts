import { Field, ID, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { JSONScalar } from '../graphql/scalars.js';

export enum SagaStatus {
  COMPLETED = 'COMPLETED',
  ROLLED_BACK = 'ROLLED_BACK',
}
registerEnumType(SagaStatus, { name: 'SagaStatus' });

export enum SagaOp {
  HSET = 'HSET',
  HDEL = 'HDEL',
  HINCRBY = 'HINCRBY',
  SADD = 'SADD',
  SREM = 'SREM',
}
registerEnumType(SagaOp, { name: 'SagaOp' });

@ObjectType({ description: 'The stored outcome of a saga: all steps ran, or every completed step was compensated.' })
export class Saga {
  @Field(() => ID)
  id!: string;

  @Field(() => SagaStatus)
  status!: SagaStatus;

  @Field(() => Int, { description: 'Steps that had run before the failure (all of them when COMPLETED).' })
  stepsCompleted!: number;

  @Field(() => Int, { nullable: true, description: '1-based index of the step that failed.' })
  failedStep!: number | null;

  @Field(() => String, { nullable: true })
  error!: string | null;
}

@InputType({ description: 'One step over a saga data key (a hash for H* ops, a set for S* ops).' })
export class SagaStepInput {
  @Field(() => SagaOp)
  op!: SagaOp;

  @Field(() => String, { description: 'The data key id.' })
  key!: string;

  @Field(() => String, { nullable: true, description: 'HSET, HDEL, HINCRBY.' })
  field?: string | null;

  @Field(() => String, { nullable: true, description: 'HSET.' })
  value?: string | null;

  @Field(() => Int, { nullable: true, description: 'HINCRBY.' })
  amount?: number | null;

  @Field(() => String, { nullable: true, description: 'SADD, SREM.' })
  member?: string | null;

  @Field(() => Int, { nullable: true, description: 'HINCRBY: the smallest value the field may reach.' })
  min?: number | null;

  @Field(() => Int, { nullable: true, description: 'HINCRBY: the largest value the field may reach.' })
  max?: number | null;
}

@InputType()
export class ExecuteSagaInput {
  @Field(() => ID, { description: 'Idempotency key: the same id with the same steps returns the stored outcome.' })
  id!: string;

  @Field(() => [SagaStepInput], { description: '1 to 64 steps, run in order.' })
  steps!: SagaStepInput[];
}

@ObjectType({ description: 'A page of a saga data hash: about `first` fields, in no particular order.' })
export class DataHashPage {
  @Field(() => JSONScalar, { description: 'field -> value ({} when the key does not exist).' })
  fields!: Record<string, string>;

  @Field(() => String, { nullable: true, description: 'Pass as `after` for the next page; null on the last.' })
  nextCursor!: string | null;
}

@ObjectType({ description: 'A page of a saga data set: about `first` members, sorted within the page.' })
export class DataSetPage {
  @Field(() => [String])
  members!: string[];

  @Field(() => String, { nullable: true, description: 'Pass as `after` for the next page; null on the last.' })
  nextCursor!: string | null;
}
