/**
 * GraphQL entry points for inventory, accounts and orders; each resolver makes one typed call to
 * src/orders/orders.engine.ts (lua/orders.lua). Order transitions use transitionWorkflow.
 */
import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context.js';
import { SafeIntScalar } from '../graphql/scalars.js';
import type { OrderEventMessage } from '../events/tenant-events.js';
import { Account, Order, OrderEvent, OrderPage, Product } from './order.type.js';
import { ProcessOrderInput } from './order.input.js';


@Resolver(() => Product)
export class ProductResolver {
  @Query(() => Product, { nullable: true })
  product(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.orders.product(tenant, id);
  }

  @Mutation(() => Product, { description: 'Adds stock (a positive quantity).' })
  restockProduct(
    @Arg('productId', () => ID) productId: string,
    @Arg('quantity', () => Int) quantity: number,
    @Arg('requestId', () => ID, { nullable: true, description: 'Idempotency key: the same request again answers the first result and adds nothing.' })
    requestId: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.orders.restock(tenant, productId, quantity, { requestId });
  }
}

@Resolver(() => Account)
export class AccountResolver {
  @Query(() => Account, { nullable: true })
  account(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.orders.account(tenant, id);
  }

  @Mutation(() => Account, { description: 'Adds funds (a positive amount of cents).' })
  depositFunds(
    @Arg('accountId', () => ID) accountId: string,
    @Arg('amountCents', () => SafeIntScalar) amountCents: number,
    @Arg('requestId', () => ID, { nullable: true, description: 'Idempotency key: the same request again answers the first result and adds nothing.' })
    requestId: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.orders.deposit(tenant, accountId, amountCents, { requestId });
  }

  @FieldResolver(() => OrderPage, { description: "The account's orders, newest first." })
  orders(
    @Root() account: Account,
    @Arg('first', () => Int, { nullable: true, defaultValue: 20 }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() { engine, tenant }: GraphQLContext,
  ) {
    return engine.orders.accountOrders(tenant, account.id, { first: first ?? undefined, after });
  }
}

@Resolver(() => Order)
export class OrderResolver {
  @Query(() => Order, { nullable: true })
  order(@Arg('id', () => ID) id: string, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.orders.order(tenant, id);
  }

  @Mutation(() => Order, {
    description: 'Checks stock and funds, then in one atomic call deducts both, creates the order and notifies.',
  })
  processOrder(@Arg('input', () => ProcessOrderInput) input: ProcessOrderInput, @Ctx() { engine, tenant }: GraphQLContext) {
    return engine.orders.processOrder(tenant, input);
  }

  @Subscription(() => OrderEvent, {
    description:
      'Order events, optionally of one account. With `after` (an eventId, or "0" for the oldest retained event) the events after it come first, then live ones, with no gap and none twice.',
    subscribe: ({ args, context }: { args: { userId?: string | null; after?: string | null }; context: GraphQLContext }) =>
      context.events.orderEvents(context.tenant, args),
  })
  orderEvents(
    @Root() message: OrderEventMessage,
    @Arg('userId', () => ID, { nullable: true }) _userId: string | null,
    @Arg('after', () => String, { nullable: true, description: 'Resume after this eventId; "0" replays every retained event.' }) _after: string | null,
  ): OrderEvent {
    return { ...message, at: new Date(message.at) };
  }
}
