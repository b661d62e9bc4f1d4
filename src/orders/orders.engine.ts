/**
 * Typed calls to lua/orders.lua: one method per Redis Function. Inputs are validated before Redis is
 * called (and again in Lua), keys come from src/redis/keys.ts, replies are decoded here.
 *
 * An order is a workflow of the built-in `order` machine: it moves through WorkflowEngine.transition,
 * which refunds and restocks when an order reaches `cancelled` or `returned`.
 */
import { fcall, fcallReadOnly, fcallReadOnlyMany } from '../redis/replies.js';
import type { EngineContext } from '../engine/context.js';
import { EngineError, badInput } from '../engine/errors.js';
import {
  asList,
  assertId,
  assertInt,
  assertPageSize,
  decodeCursor,
  encodeCursor,
  MAX_INT32,
  MAX_MONEY_CENTS,
} from '../engine/validation.js';
import {
  decodeWorkflow,
  ORDER_MACHINE,
  routeOf,
  type Page,
  type Workflow,
  type WorkflowReply,
} from '../workflows/workflows.engine.js';

export interface Product {
  id: string;
  stock: number;
}

export interface Account {
  id: string;
  balanceCents: number;
}

export interface ProcessOrderInput {
  orderId: string;
  userId: string;
  productId: string;
  quantity: number;
  unitPriceCents: number;
}

export interface Order {
  id: string;
  userId: string;
  productId: string;
  quantity: number;
  unitPriceCents: number;
  totalCents: number;
  state: string;
  createdAt: Date;
  /** The order's workflow (kind 'order'): version, history position, allowed transitions. */
  workflow: Workflow;
}

/** An order from its workflow; null when the workflow is not an order. */
export function orderOf(wf: Workflow): Order | null {
  if (wf.kind !== 'order' || !wf.order) return null;
  return {
    id: wf.id,
    userId: wf.order.userId,
    productId: wf.order.productId,
    quantity: wf.order.quantity,
    unitPriceCents: wf.order.unitPriceCents,
    totalCents: wf.order.totalCents,
    state: wf.state,
    createdAt: wf.createdAt,
    workflow: wf,
  };
}

function requireOrder(wf: Workflow): Order {
  const order = orderOf(wf);
  if (!order) throw new EngineError('INTERNAL', `workflow ${wf.id} answered as an order is not one`);
  return order;
}

export class OrderEngine {
  constructor(private readonly ctx: EngineContext) {}

  /** KEYS and ARGV tail of an optionally idempotent request (lua/orders.lua: request_args). */
  private requestParts(tenant: string, requestId: string | null | undefined): { keys: string[]; args: (string | number)[] } {
    if (requestId === undefined || requestId === null) return { keys: [], args: [] };
    const id = assertId(requestId, 'requestId');
    return { keys: [this.ctx.keys(tenant).request(id)], args: [id, this.ctx.options.idempotencyTtlMs] };
  }

  /**
   * Adds units to a product's stock; the resulting stock stays within 2^31 - 1. With a requestId,
   * the same request again answers the first result and adds nothing (IDEMPOTENCY_CONFLICT when the
   * requestId was used for another request).
   */
  async restock(tenant: string, productId: string, quantity: number, options: { requestId?: string | null } = {}): Promise<Product> {
    const id = assertId(productId, 'productId');
    const q = assertInt(quantity, 'quantity', 1, MAX_INT32);
    const request = this.requestParts(tenant, options.requestId);
    const k = this.ctx.keys(tenant);
    return fcall<Product>(this.ctx.redis, 'product_restock', [k.productStock(id), ...request.keys], [id, q, ...request.args]);
  }

  /** Adds money to an account's balance (within 10^13 cents); idempotent by requestId like restock. */
  async deposit(tenant: string, accountId: string, amountCents: number, options: { requestId?: string | null } = {}): Promise<Account> {
    const id = assertId(accountId, 'accountId');
    const amount = assertInt(amountCents, 'amountCents', 1, MAX_MONEY_CENTS);
    const request = this.requestParts(tenant, options.requestId);
    const k = this.ctx.keys(tenant);
    return fcall<Account>(this.ctx.redis, 'account_deposit', [k.accountBalance(id), ...request.keys], [id, amount, ...request.args]);
  }

  async product(tenant: string, productId: string): Promise<Product | null> {
    const id = assertId(productId, 'productId');
    const k = this.ctx.keys(tenant);
    return fcallReadOnly<Product | null>(this.ctx.redis, 'product_get', [k.productStock(id)], [id]);
  }

  async account(tenant: string, accountId: string): Promise<Account | null> {
    const id = assertId(accountId, 'accountId');
    const k = this.ctx.keys(tenant);
    return fcallReadOnly<Account | null>(this.ctx.redis, 'account_get', [k.accountBalance(id)], [id]);
  }

  /**
   * Places an order: deducts stock and balance and creates the order workflow in state `pending`,
   * atomically. Idempotent by orderId: the same parameters answer the order as it is now and charge
   * nothing; other parameters are IDEMPOTENCY_CONFLICT.
   */
  async processOrder(tenant: string, input: ProcessOrderInput): Promise<Order> {
    const orderId = assertId(input.orderId, 'orderId');
    const userId = assertId(input.userId, 'userId');
    const productId = assertId(input.productId, 'productId');
    const quantity = assertInt(input.quantity, 'quantity', 1, MAX_INT32);
    const unitPriceCents = assertInt(input.unitPriceCents, 'unitPriceCents', 0, MAX_MONEY_CENTS);
    if (quantity * unitPriceCents > MAX_MONEY_CENTS) {
      throw badInput(`order total (quantity x unitPriceCents) must not exceed ${MAX_MONEY_CENTS} cents`);
    }
    const k = this.ctx.keys(tenant);
    const keys = [...k.workflowBlock(orderId, ORDER_MACHINE, { userId, productId }), k.machineNames()];
    const reply = await fcall<WorkflowReply>(this.ctx.redis, 'order_process', keys, [
      ...this.ctx.eventArgs(k),
      orderId,
      userId,
      productId,
      quantity,
      unitPriceCents,
    ]);
    const wf = decodeWorkflow(reply);
    this.ctx.rememberRoute(tenant, orderId, routeOf(wf));
    return requireOrder(wf);
  }

  /** An order by id; null when there is no workflow with that id or it is not an order. */
  async order(tenant: string, orderId: string): Promise<Order | null> {
    const id = assertId(orderId, 'orderId');
    const k = this.ctx.keys(tenant);
    let reply: WorkflowReply | null;
    try {
      reply = await fcallReadOnly<WorkflowReply | null>(
        this.ctx.redis,
        'wf_get',
        [k.workflow(id), k.machine(ORDER_MACHINE)],
        [ORDER_MACHINE],
      );
    } catch (err) {
      // wf_get answers STALE_KEYS when the workflow belongs to another machine: not an order
      if (err instanceof EngineError && err.code === 'STALE_KEYS') return null;
      throw err;
    }
    return reply ? orderOf(decodeWorkflow(reply)) : null;
  }

  /** An account's orders, newest first; the cursor is a position, stable when orders are placed meanwhile. */
  async accountOrders(
    tenant: string,
    accountId: string,
    page: { first?: number; after?: string | null } = {},
  ): Promise<Page<Order>> {
    const id = assertId(accountId, 'accountId');
    const first = assertPageSize(page.first, 20);
    const after = decodeCursor(page.after);
    if (after !== '' && !/^\d{13}:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(after)) throw badInput('after is not a cursor of this listing');
    const k = this.ctx.keys(tenant);
    const reply = await fcallReadOnly<{ ids: unknown; next: string | null }>(
      this.ctx.redis,
      'account_orders',
      [k.accountOrders(id)],
      [after, first],
    );
    const ids = asList<string>(reply.ids);
    const replies = await fcallReadOnlyMany<WorkflowReply | null>(
      this.ctx.redis,
      'wf_get',
      ids.map((orderId) => ({ keys: [k.workflow(orderId), k.machine(ORDER_MACHINE)], args: [ORDER_MACHINE] })),
    );
    return {
      items: replies
        .filter((r): r is WorkflowReply => r !== null)
        .map((r) => orderOf(decodeWorkflow(r)))
        .filter((o): o is Order => o !== null),
      nextCursor: reply.next === null ? null : encodeCursor(reply.next),
    };
  }
}
