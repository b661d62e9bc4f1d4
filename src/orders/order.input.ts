import { Field, ID, InputType, Int } from 'type-graphql';
import { SafeIntScalar } from '../graphql/scalars.js';

@InputType()
export class ProcessOrderInput {
  @Field(() => ID, { description: 'Idempotency key: the same id with the same parameters returns the first result.' })
  orderId!: string;

  @Field(() => ID)
  userId!: string;

  @Field(() => ID)
  productId!: string;

  @Field(() => Int)
  quantity!: number;

  @Field(() => SafeIntScalar)
  unitPriceCents!: number;
}
