/**
 * The two event feeds a client subscribes to, per tenant: arguments are validated here like query
 * arguments (BAD_USER_INPUT before anything is subscribed), and each feed is a relay listener on the
 * tenant's channel and stream with its filter.
 */
import { assertId, assertName } from '../engine/validation.js';
import { tenantKeys } from '../redis/keys.js';
import { parseAfter } from './stream-id.js';
import type { EventKind, EventRelay, RelayedEvent } from './relay.js';

export interface OrderEventMessage extends RelayedEvent {
  orderId: string;
  userId: string;
  state: string;
  totalCents: number;
  /** Redis time of the change, in ms. */
  at: number;
}

export interface WorkflowEventMessage extends RelayedEvent {
  workflowId: string;
  machine: string;
  from: string | null;
  to: string;
  version: number;
  at: number;
  metadata: Record<string, unknown>;
}

function source(tenant: string, kind: EventKind) {
  const keys = tenantKeys(tenant);
  return { channel: kind === 'order' ? keys.ordersChannel() : keys.workflowChannel(), stream: keys.events(), kind };
}

function checkAfter(after: string | null | undefined): string | null {
  if (after === null || after === undefined) return null;
  parseAfter(after);
  return after;
}

export class TenantEvents {
  constructor(
    private readonly relay: EventRelay,
    /** How many client subscriptions each listener made here serves (see shared-subscriptions.ts). */
    private readonly subscribers: () => number = () => 1,
  ) {}

  /** The same feeds for a group of identical subscriptions that share one listener. */
  sharedBy(subscribers: () => number): TenantEvents {
    return new TenantEvents(this.relay, subscribers);
  }

  orderEvents(tenant: string, args: { userId?: string | null; after?: string | null }): AsyncIterableIterator<OrderEventMessage> {
    const userId = args.userId == null ? null : assertId(args.userId, 'userId');
    const after = checkAfter(args.after);
    return this.relay.listen(source(tenant, 'order'), {
      after,
      filter: (event) => userId === null || event.userId === userId,
      subscribers: this.subscribers,
    }) as AsyncIterableIterator<OrderEventMessage>;
  }

  workflowEvents(
    tenant: string,
    args: { workflowId?: string | null; machine?: string | null; after?: string | null },
  ): AsyncIterableIterator<WorkflowEventMessage> {
    const workflowId = args.workflowId == null ? null : assertId(args.workflowId, 'workflowId');
    const machine = args.machine == null ? null : assertName(args.machine, 'machine');
    const after = checkAfter(args.after);
    return this.relay.listen(source(tenant, 'workflow'), {
      after,
      filter: (event) => (workflowId === null || event.workflowId === workflowId) && (machine === null || event.machine === machine),
      subscribers: this.subscribers,
    }) as AsyncIterableIterator<WorkflowEventMessage>;
  }
}
