/**
 * The event relay: what the Lua functions PUBLISH, passed on to this process's subscriptions with
 * nothing lost, nothing twice, and bounded memory.
 *
 * - One subscriber connection per process and one Redis SUBSCRIBE per channel, shared by every
 *   listener on it. SUBSCRIBE is sent only on a connection that has finished its handshake: ioredis
 *   writes it earlier if asked, Redis then refuses the ready check's INFO in subscriber mode, the
 *   connection is dropped and resubscribed ~50 ms later, and what was published meanwhile is lost.
 * - Every event is also in the tenant's Redis Stream, and its `eventId` is its stream id, so ids order
 *   all events. Per channel the relay remembers the last id it passed on; when the subscriber
 *   connection drops and comes back (network, Redis restart, output buffer limit) it subscribes again
 *   and reads the stream from that id before passing on live messages (the gap fill). Anything at or
 *   below the last id is dropped, so the hand-over delivers nothing twice.
 * - A listener may start `after` an event id: it reads the stream from there in pages, one page at a
 *   time as its client consumes them, while live events wait in a side buffer; then it switches to
 *   live, dropping what the pages already delivered.
 * - Each listener filters before it queues, and its queue is bounded in bytes. A client that does not
 *   read (graphql-ws awaits each socket write, so a full socket stops the pulls) makes its queue grow
 *   until the listener ends with SUBSCRIPTION_LAGGING and the last eventId it delivered, from which the
 *   client resumes. Server memory stays bounded whatever a client does.
 * - On a Redis Cluster the functions SPUBLISH (sharded pub/sub: a tenant's channels carry its hash tag,
 *   so only the primary owning the tenant's slot carries its messages; README, "Events on a cluster").
 *   The relay then keeps one subscriber connection per primary that owns a subscribed channel's slot
 *   and SSUBSCRIBEs each channel there. When the slot moves (resharding, failover) Redis drops the
 *   subscription, or the client's slot map changes: the channel is subscribed on its new owner and
 *   the gap is filled from the stream, which moved with the slot, exactly as after a reconnect.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { isCluster, keySlot, nodeKey, ownerOf, slotOwner, type RedisClient, type RedisTarget } from '../redis/client.js';
import { EngineError } from '../core/errors.js';
import { eventsDropped, eventsRelayed } from '../metrics.js';
import { compareStreamIds, formatStreamId, parseAfter, parseStreamId, type StreamId } from './stream-id.js';

export type EventKind = 'workflow' | 'order';

/** The metrics label of a kind. */
const KIND_LABEL: Record<EventKind, string> = { workflow: 'workflows', order: 'orders' };

/** Where a kind of event is published and kept: a tenant's channel and its event stream. */
export interface EventSource {
  channel: string;
  stream: string;
  kind: EventKind;
}

/** An event as published: the stream id first, then the event's own fields. */
export interface RelayedEvent {
  eventId: string;
  type: string;
  [field: string]: unknown;
}

interface Delivery {
  event: RelayedEvent;
  id: StreamId;
  /** Size of the event's JSON text: what a queued event costs, roughly. */
  bytes: number;
  /** Read from the stream by a resuming listener: it only ever holds one page of these. */
  replayed?: boolean;
}

export interface ListenOptions {
  /** An eventId the client has seen, or "0" for the oldest retained event; null: live only. */
  after?: string | null;
  /** Which events of the channel this listener wants; applied before anything is queued. */
  filter?: (event: RelayedEvent) => boolean;
  /** How many client subscriptions this listener serves (shared subscriptions); default 1. */
  subscribers?: () => number;
}

export interface EventRelayOptions {
  /** Bound of one listener's queue, in bytes of event JSON (SUBSCRIPTION_LAGGING past it). */
  maxQueuedBytes?: number;
  /** Stream entries read per XRANGE when a listener resumes or the relay fills a gap. */
  pageSize?: number;
  log?: (line: string) => void;
  redisOptions?: RedisOptions;
}

export interface EventRelayStats {
  /** Events passed on from Redis to this process's listeners (live or gap fill). */
  relayed: number;
  /** Listeners ended because their client fell behind. */
  lagging: number;
  listeners: number;
  /** Bytes of events queued for clients that have not taken them yet, over every listener. */
  queuedBytes: number;
}

export interface EventRelay {
  /** The connection in SUBSCRIBE mode (on a cluster: the first one opened, to one primary). */
  readonly subscriber: Redis;
  /** The connection `channel` is subscribed on now (on a cluster: to the primary owning its slot), or null. */
  subscriberFor(channel: string): Redis | null;
  listen(source: EventSource, options?: ListenOptions): AsyncIterableIterator<RelayedEvent>;
  /** Client subscriptions on `channel` in this process that receive every event published from now on. */
  listenerCount(channel: string): number;
  /** The same, summed by kind over every channel (metrics label values: `orders`, `workflows`). */
  activeSubscriptions(): Record<string, number>;
  stats(): EventRelayStats;
  close(): Promise<void>;
}

export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;
const DEFAULT_PAGE_SIZE = 500;
/**
 * A resuming listener reads this many entries at a time, and the next page only once its client has
 * taken the last one: at most one page (events are at most ~17 KB) is held for it, whatever the
 * stream's length, and a page does not count toward the lagging bound.
 */
const REPLAY_PAGE_SIZE = 100;
/** Messages held while a gap is filled; past this the channel's listeners lag. */
const MAX_HELD_MESSAGES = 50_000;
/** An SSUBSCRIBE not answered within this is tried again (ioredis never settles one that met MOVED). */
const SUBSCRIBE_TIMEOUT_MS = 2000;

/** One subscriber connection, and how channels are subscribed on it. */
interface Link {
  readonly conn: Redis;
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Which channel an event of the stream belongs to, from its stream `type` field. */
export function eventKindOf(type: string): EventKind | null {
  if (type === 'WORKFLOW_TRANSITION') return 'workflow';
  if (type.startsWith('ORDER_')) return 'order';
  return null;
}

type StreamEntry = [id: string, fields: string[]];

function deliveryFromEntry([id, fields]: StreamEntry): (Delivery & { kind: EventKind | null }) | null {
  let type = '';
  let data = '';
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'type') type = fields[i + 1]!;
    else if (fields[i] === 'data') data = fields[i + 1]!;
  }
  const streamId = parseStreamId(id);
  if (!streamId || !data) return null;
  const event = { eventId: id, ...(JSON.parse(data) as Record<string, unknown>) } as RelayedEvent;
  return { event, id: streamId, bytes: data.length + id.length + 14, kind: eventKindOf(type) };
}

function deliveryFromMessage(text: string): Delivery | null {
  let event: RelayedEvent;
  try {
    event = JSON.parse(text) as RelayedEvent;
  } catch {
    return null;
  }
  const id = typeof event?.eventId === 'string' ? parseStreamId(event.eventId) : null;
  return id ? { event, id, bytes: text.length } : null;
}

function laggingError(lastEventId: string | null): EngineError {
  return new EngineError(
    'SUBSCRIPTION_LAGGING',
    `the subscription fell too far behind its events and was ended; resume it with after: ${lastEventId === null ? 'null (nothing was delivered)' : `"${lastEventId}"`}`,
    { lastEventId },
  );
}

export function createEventRelay(target: RedisTarget, reader: RedisClient, options: EventRelayOptions = {}): EventRelay {
  const maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const log = options.log ?? (() => {});
  const cluster = isCluster(reader) ? reader : null;
  if ((typeof target === 'string') === (cluster !== null)) throw new Error('the event relay needs a cluster client for a cluster, a Redis client for one Redis');
  const channels = new Map<string, Channel>();
  const stats = { relayed: 0, lagging: 0 };
  let closed = false;
  /** Subscriber connections: the one of a single Redis, or one per primary (by host:port) on a cluster. */
  const links = new Map<string, Link>();

  /** Opens a subscriber connection; resubscribing is ours to do (with the gap fill), not ioredis'. */
  function openLink(key: string, conn: Redis, sharded: boolean): Link {
    conn.on('error', (err: Error) => {
      // Redis dropped a sharded subscription because the slot left this node (resharding,
      // failover); ioredis reports that push as an error. Subscribe where the slot lives now.
      const dropped = /Last reply: sunsubscribe,(.+),\d+$/.exec(err.message)?.[1];
      if (dropped) void channels.get(dropped)?.refill();
    });
    conn.on(sharded ? 'smessage' : 'message', (name: string, text: string) => channels.get(name)?.onMessage(text));
    let wasReady = false;
    conn.on('ready', () => {
      if (wasReady) for (const channel of channels.values()) if (channel.link?.conn === conn) void channel.refill();
      wasReady = true;
    });
    const link: Link = sharded
      ? { conn, subscribe: (c) => withTimeout(conn.ssubscribe(c), SUBSCRIBE_TIMEOUT_MS, `subscribing ${c}`), unsubscribe: (c) => conn.sunsubscribe(c) }
      : { conn, subscribe: (c) => conn.subscribe(c), unsubscribe: (c) => conn.unsubscribe(c) };
    links.set(key, link);
    return link;
  }

  const single = typeof target === 'string' ? openLink('', new Redis(target, { ...options.redisOptions, autoResubscribe: false }), false) : null;

  /** The connection a channel is subscribed on now: the one, or the one to the primary owning its slot. */
  async function linkFor(channel: Channel, refresh: boolean): Promise<Link> {
    if (single) return single;
    channel.slot ??= keySlot(channel.source.channel);
    const owner = await slotOwner(cluster!, channel.slot, refresh);
    const existing = links.get(owner);
    if (existing) return existing;
    const node = cluster!.nodes('master').find((n) => nodeKey(n) === owner);
    const conn = new Redis({ ...cluster!.options.redisOptions, ...options.redisOptions, host: node?.options.host, port: node?.options.port, autoResubscribe: false });
    return openLink(owner, conn, true);
  }

  // the slot map changed (a MOVED, a node added or failed over): channels whose slot moved follow it
  cluster?.on('refresh', () => {
    for (const channel of channels.values()) {
      if (channel.subscribed && channel.slot !== null && links.get(ownerOf(cluster, channel.slot) ?? '') !== channel.link) void channel.refill();
    }
  });

  async function readPage(stream: string, after: StreamId, count = pageSize): Promise<StreamEntry[]> {
    return (await reader.xrange(stream, `(${formatStreamId(after)}`, '+', 'COUNT', count)) as StreamEntry[];
  }

  function whenReady(subscriber: Redis): Promise<void> {
    if (closed) return Promise.reject(new Error('the event relay is closed'));
    if (subscriber.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onReady = () => {
        subscriber.off('end', onEnd);
        resolve();
      };
      const onEnd = () => {
        subscriber.off('ready', onReady);
        reject(new Error('the event relay is closed'));
      };
      subscriber.once('ready', onReady);
      subscriber.once('end', onEnd);
    });
  }

  /** Subscribes `channel` on the connection that carries it now; that connection. */
  async function subscribeOn(channel: Channel, refresh: boolean): Promise<Link> {
    if (closed) throw new Error('the event relay is closed');
    const link = await linkFor(channel, refresh);
    await whenReady(link.conn);
    if (channel.link && channel.link !== link) channel.link.unsubscribe(channel.source.channel).catch(() => {});
    channel.link = link;
    await link.subscribe(channel.source.channel);
    return link;
  }

  class Channel {
    readonly listeners = new Set<Listener>();
    /** The last event id passed on (or the stream's tail when the channel was subscribed). */
    lastId: StreamId | null = null;
    subscribed = false;
    filling = false;
    /** Asked to refill while filling (the slot moved again): fill once more after this one. */
    refillAgain = false;
    held: string[] = [];
    /** The connection it is subscribed on, and (cluster) its hash slot. */
    link: Link | null = null;
    slot: number | null = null;
    readonly live: Promise<void>;

    constructor(readonly source: EventSource) {
      this.live = this.establish();
      this.live.catch(() => channels.get(source.channel) === this && channels.delete(source.channel));
    }

    private async establish(): Promise<void> {
      await subscribeOn(this, false);
      // The gap fill after a reconnect starts from here when nothing was relayed yet.
      const tail = (await reader.xrevrange(this.source.stream, '+', '-', 'COUNT', 1)) as StreamEntry[];
      const tailId = tail[0] ? parseStreamId(tail[0][0]) : null;
      if (tailId && (!this.lastId || compareStreamIds(tailId, this.lastId) > 0)) this.lastId = tailId;
      this.subscribed = true;
    }

    onMessage(text: string): void {
      if (this.filling) {
        this.held.push(text);
        if (this.held.length > MAX_HELD_MESSAGES) this.lagAll();
        return;
      }
      const delivery = deliveryFromMessage(text);
      if (delivery) this.dispatch(delivery);
    }

    dispatch(delivery: Delivery): void {
      if (this.lastId && compareStreamIds(delivery.id, this.lastId) <= 0) return;
      this.lastId = delivery.id;
      stats.relayed++;
      eventsRelayed.inc({ kind: KIND_LABEL[this.source.kind] });
      for (const listener of this.listeners) listener.offer(delivery);
    }

    /** After a reconnect: subscribe again, then pass on what the stream has past lastId. */
    async refill(): Promise<void> {
      if (!this.subscribed) return;
      if (this.filling) {
        this.refillAgain = true;
        return;
      }
      this.filling = true;
      let attempt = 0;
      while (!closed && this.listeners.size > 0) {
        try {
          this.refillAgain = false;
          await subscribeOn(this, attempt++ > 0);
          let cursor = this.lastId ?? ([0n, 0n] as StreamId);
          for (;;) {
            const page = await readPage(this.source.stream, cursor);
            for (const entry of page) {
              const delivery = deliveryFromEntry(entry);
              if (!delivery) continue;
              cursor = delivery.id;
              if (delivery.kind === this.source.kind) this.dispatch(delivery);
            }
            if (page.length < pageSize) break;
          }
          if (!this.refillAgain) break;
        } catch (err) {
          log(`events: filling the gap on ${this.source.channel} failed (${(err as Error).message}); retrying`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      this.filling = false;
      for (const text of this.held.splice(0)) this.onMessage(text);
    }

    lagAll(): void {
      this.held = [];
      for (const listener of [...this.listeners]) listener.fail(laggingError(listener.lastDeliveredId));
    }

    remove(listener: Listener): void {
      this.listeners.delete(listener);
      if (this.listeners.size > 0 || channels.get(this.source.channel) !== this) return;
      channels.delete(this.source.channel);
      if (this.subscribed && !closed) this.link?.unsubscribe(this.source.channel).catch(() => {});
    }
  }

  class Listener implements AsyncIterableIterator<RelayedEvent> {
    private queue: Delivery[] = [];
    private queuedBytes = 0;
    /** Of queuedBytes, what the current replay page holds. */
    private replayBytes = 0;
    /** Live events that arrive while the stream is replayed, until the replay catches up. */
    private pending: Delivery[] | null = null;
    private replayCursor: StreamId | null = null;
    private lastQueued: StreamId | null = null;
    private waiting: { resolve: (r: IteratorResult<RelayedEvent>) => void; reject: (e: unknown) => void } | null = null;
    private failure: Error | null = null;
    private done = false;
    private registered = false;
    lastDeliveredId: string | null;
    private readonly ready: Promise<void>;

    constructor(
      private readonly channel: Channel,
      after: string | null,
      private readonly filter: (event: RelayedEvent) => boolean,
      readonly subscribers: () => number,
    ) {
      const from = after === null ? null : parseAfter(after);
      this.lastDeliveredId = after;
      if (from) {
        this.lastQueued = from;
        this.replayCursor = from;
        this.pending = [];
      }
      this.ready = this.start(from);
      this.ready.catch(() => {});
    }

    private async start(from: StreamId | null): Promise<void> {
      await this.channel.live;
      if (this.done) return;
      this.channel.listeners.add(this);
      this.registered = true;
      if (from && compareStreamIds(from, [0n, 0n]) > 0) {
        const first = (await reader.xrange(this.channel.source.stream, '-', '+', 'COUNT', 1)) as StreamEntry[];
        const firstId = first[0] ? parseStreamId(first[0][0]) : null;
        if (firstId && compareStreamIds(from, firstId) < 0) {
          throw new EngineError(
            'EVENTS_TRIMMED',
            `events after ${formatStreamId(from)} are no longer retained; the oldest retained event is ${first[0]![0]}: read the current state again, then subscribe with after: "${first[0]![0]}"`,
            { oldestEventId: first[0]![0] },
          );
        }
      }
    }

    get queued(): number {
      return this.queuedBytes;
    }

    get live(): boolean {
      return this.registered && !this.done;
    }

    offer(delivery: Delivery): void {
      if (this.done || !this.filter(delivery.event)) return;
      if (this.pending) {
        this.pending.push(delivery);
        this.queuedBytes += delivery.bytes;
        if (this.queuedBytes - this.replayBytes > maxQueuedBytes) this.fail(laggingError(this.lastDeliveredId));
        return;
      }
      this.enqueue(delivery);
    }

    private enqueue(delivery: Delivery): void {
      if (this.lastQueued && compareStreamIds(delivery.id, this.lastQueued) <= 0) return;
      this.lastQueued = delivery.id;
      if (this.waiting) {
        const { resolve } = this.waiting;
        this.waiting = null;
        this.lastDeliveredId = delivery.event.eventId;
        resolve({ value: delivery.event, done: false });
        return;
      }
      this.queue.push(delivery);
      this.queuedBytes += delivery.bytes;
      if (delivery.replayed) this.replayBytes += delivery.bytes;
      if (this.queuedBytes - this.replayBytes > maxQueuedBytes) this.fail(laggingError(this.lastDeliveredId));
    }

    /** Reads one page of the stream past the replay cursor; the last page hands over to live. */
    private async replayPage(): Promise<void> {
      const page = await readPage(this.channel.source.stream, this.replayCursor!, REPLAY_PAGE_SIZE);
      if (this.done) return;
      for (const entry of page) {
        const delivery = deliveryFromEntry(entry);
        if (!delivery) continue;
        this.replayCursor = delivery.id;
        if (delivery.kind === this.channel.source.kind && this.filter(delivery.event)) this.enqueue({ ...delivery, replayed: true });
      }
      if (page.length < REPLAY_PAGE_SIZE) {
        const pending = this.pending ?? [];
        this.pending = null;
        for (const delivery of pending) {
          this.queuedBytes -= delivery.bytes;
          this.enqueue(delivery);
        }
      }
    }

    fail(error: Error): void {
      if (this.done) return;
      if (error instanceof EngineError && error.code === 'SUBSCRIPTION_LAGGING') {
        stats.lagging++;
        const discarded = this.queue.length + (this.pending?.length ?? 0);
        if (discarded > 0) eventsDropped.inc({ kind: KIND_LABEL[this.channel.source.kind] }, discarded);
      }
      this.failure = error;
      this.release();
      if (this.waiting) {
        const { reject } = this.waiting;
        this.waiting = null;
        this.failure = null;
        reject(error);
      }
    }

    private release(): void {
      this.done = true;
      this.queue = [];
      this.pending = null;
      this.queuedBytes = 0;
      this.replayBytes = 0;
      if (this.registered) this.channel.remove(this);
      this.registered = false;
    }

    async next(): Promise<IteratorResult<RelayedEvent>> {
      try {
        await this.ready;
      } catch (err) {
        if (!this.done) this.release();
        throw err;
      }
      for (;;) {
        if (this.failure) {
          const failure = this.failure;
          this.failure = null;
          throw failure;
        }
        const delivery = this.queue.shift();
        if (delivery) {
          this.queuedBytes -= delivery.bytes;
          if (delivery.replayed) this.replayBytes -= delivery.bytes;
          this.lastDeliveredId = delivery.event.eventId;
          return { value: delivery.event, done: false };
        }
        if (this.done) return { value: undefined, done: true };
        if (this.pending) {
          await this.replayPage();
          continue;
        }
        return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
      }
    }

    async return(): Promise<IteratorResult<RelayedEvent>> {
      if (!this.done) this.release();
      if (this.waiting) {
        this.waiting.resolve({ value: undefined, done: true });
        this.waiting = null;
      }
      return { value: undefined, done: true };
    }

    async throw(error: unknown): Promise<IteratorResult<RelayedEvent>> {
      await this.return();
      throw error;
    }

    [Symbol.asyncIterator](): AsyncIterableIterator<RelayedEvent> {
      return this;
    }
  }

  return {
    get subscriber(): Redis {
      const first = links.values().next().value;
      if (!first) throw new Error('the event relay has no subscriber connection yet (a cluster opens them as channels are subscribed)');
      return first.conn;
    },
    listen(source, listenOptions = {}) {
      let channel = channels.get(source.channel);
      if (!channel) {
        channel = new Channel(source);
        channels.set(source.channel, channel);
      }
      return new Listener(channel, listenOptions.after ?? null, listenOptions.filter ?? (() => true), listenOptions.subscribers ?? (() => 1));
    },
    subscriberFor(name) {
      return channels.get(name)?.link?.conn ?? null;
    },
    listenerCount(name) {
      const channel = channels.get(name);
      if (!channel?.subscribed) return 0;
      let count = 0;
      for (const listener of channel.listeners) if (listener.live) count += listener.subscribers();
      return count;
    },
    activeSubscriptions() {
      const totals: Record<string, number> = { orders: 0, workflows: 0 };
      for (const [name, channel] of channels) totals[KIND_LABEL[channel.source.kind]]! += this.listenerCount(name);
      return totals;
    },
    stats() {
      let listeners = 0;
      let queuedBytes = 0;
      for (const channel of channels.values()) {
        listeners += channel.listeners.size;
        for (const listener of channel.listeners) queuedBytes += listener.queued;
      }
      return { ...stats, listeners, queuedBytes };
    },
    async close() {
      closed = true;
      for (const channel of [...channels.values()]) for (const listener of [...channel.listeners]) void listener.return();
      channels.clear();
      // disconnect rather than QUIT: a QUIT to a Redis that is down would wait for it
      for (const link of links.values()) link.conn.disconnect();
    },
  };
}
