import { Field, ID, InputType, Int } from 'type-graphql';
import { SafeIntScalar } from '../graphql/scalars.js';
import type { ProcessOrderInput as EngineProcessOrderInput } from './orders.engine.js';

/** type-graphql needs its own decorated fields; `implements` keeps them the engine's (orders.engine.ts). */
@InputType()
export class ProcessOrderInput implements EngineProcessOrderInput {
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
