import { Field, ID, Int, ObjectType } from 'type-graphql';
import { DateTimeScalar, SafeIntScalar } from '../graphql/scalars.js';
import { Workflow } from '../workflows/workflow.type.js';
import type { Account as EngineAccount, Order as EngineOrder, Product as EngineProduct } from './orders.engine.js';

// type-graphql needs its own decorated fields; `implements` keeps them the engine's (orders.engine.ts).

@ObjectType({ description: 'A product and its stock. Null until first restocked.' })
export class Product implements EngineProduct {
  @Field(() => ID)
  id!: string;

  @Field(() => Int)
  stock!: number;
}

@ObjectType({ description: 'An account and its balance in integer cents. Null until first funded.' })
export class Account implements EngineAccount {
  @Field(() => ID)
  id!: string;

  @Field(() => SafeIntScalar)
  balanceCents!: number;
}

@ObjectType({ description: 'An order: a workflow of the built-in `order` machine, created by processOrder.' })
export class Order implements Omit<EngineOrder, 'workflow'> {
  @Field(() => ID)
  id!: string;

  @Field(() => ID, { description: 'The account charged.' })
  userId!: string;

  @Field(() => ID)
  productId!: string;

  @Field(() => Int)
  quantity!: number;

  @Field(() => SafeIntScalar)
  unitPriceCents!: number;

  @Field(() => SafeIntScalar)
  totalCents!: number;

  @Field(() => String)
  state!: string;

  @Field(() => DateTimeScalar)
  createdAt!: Date;

  @Field(() => Workflow)
  workflow!: Workflow;
}

@ObjectType({ description: 'A page of orders, newest first.' })
export class OrderPage {
  @Field(() => [Order])
  items!: Order[];

  @Field(() => String, { nullable: true })
  nextCursor!: string | null;
}

@ObjectType({ description: 'ORDER_CONFIRMED when an order is placed, ORDER_<STATE> on every order transition.' })
export class OrderEvent {
  @Field(() => ID, { description: 'The event stream entry id.' })
  eventId!: string;

  @Field(() => String)
  type!: string;

  @Field(() => ID)
  orderId!: string;

  @Field(() => ID)
  userId!: string;

  @Field(() => String)
  state!: string;

  @Field(() => SafeIntScalar)
  totalCents!: number;

  @Field(() => DateTimeScalar)
  at!: Date;
}
