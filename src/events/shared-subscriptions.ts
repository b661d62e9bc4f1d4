/**
 * Fan-out: subscriptions with the same document, variables and scope (tenant) share one execution.
 *
 * graphql-ws runs every subscription on its own: one relay listener, one execution of the selection
 * set and one JSON serialization per event per subscriber. A dashboard opened by 200 people is 200
 * times the same work. Here the first subscription of a kind runs graphql's `subscribe` as usual (so
 * its arguments are validated as usual) and becomes a group; identical ones join it. Per event the
 * group executes once, serializes the result once, and writes that text to every member's socket,
 * corking each socket until the end of the event-loop turn.
 *
 * A member whose socket has more than `maxBufferedBytes` waiting to be sent (a client that does not
 * read) ends with SUBSCRIPTION_LAGGING and the last eventId it was sent, like an unshared one.
 * Subscriptions that resume (`after`) replay the stream for themselves and are never shared.
 */
import {
  GraphQLError,
  Kind,
  getOperationAST,
  subscribe,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLFormattedError,
} from 'graphql';
import type { WebSocket } from 'ws';
import { EngineError } from '../engine/errors.js';

export interface SharingOptions {
  /** Off: every subscription runs on its own (graphql-ws' default path); the bench's baseline. */
  enabled: boolean;
  /** Bytes a member's socket may have waiting before the member lags. */
  maxBufferedBytes: number;
  /** The same error formatting the unshared path applies (onNext / formatError). */
  formatErrors(errors: readonly GraphQLError[]): GraphQLFormattedError[];
}

interface Transport {
  socket: WebSocket;
  id: string;
  /** What besides document and variables decides the result: the tenant (and the caller's scope). */
  scope: string;
}

type OperationResult = Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult>;

/** Which context belongs to which socket and operation; set by graphql-ws' context callback. */
const transports = new WeakMap<object, Transport>();

const documentIds = new WeakMap<DocumentNode, number>();
let nextDocumentId = 1;

function documentKey(document: DocumentNode): number {
  let id = documentIds.get(document);
  if (id === undefined) documentIds.set(document, (id = nextDocumentId++));
  return id;
}

/** A resuming subscription (a non-null `after`) replays the stream for itself alone. */
function resumes(args: ExecutionArgs): boolean {
  const operation = getOperationAST(args.document, args.operationName);
  if (!operation) return true;
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD) return true;
    for (const argument of selection.arguments ?? []) {
      if (argument.name.value !== 'after') continue;
      if (argument.value.kind === Kind.NULL) continue;
      if (argument.value.kind === Kind.VARIABLE) {
        const value = (args.variableValues as Record<string, unknown> | null | undefined)?.[argument.value.name.value];
        if (value === null || value === undefined) continue;
      }
      return true;
    }
  }
  return false;
}

function stableJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  const keys = Object.keys(value as Record<string, unknown>).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

/** The eventId of the event a result was made from, when the client selected it. */
function eventIdOf(result: ExecutionResult): string | null {
  const field = result.data ? Object.values(result.data)[0] : null;
  const eventId = (field as { eventId?: unknown } | null)?.eventId;
  return typeof eventId === 'string' ? eventId : null;
}

/** Sockets corked during this event-loop turn; uncorked together when it ends. */
const corked = new Set<{ cork(): void; uncork(): void }>();
function corkUntilTurnEnds(socket: WebSocket): void {
  const raw = (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
  if (!raw || corked.has(raw)) return;
  raw.cork();
  if (corked.size === 0) {
    setImmediate(() => {
      for (const s of corked) s.uncork();
      corked.clear();
    });
  }
  corked.add(raw);
}

class Member implements AsyncIterableIterator<ExecutionResult> {
  private settle: { resolve: (r: IteratorResult<ExecutionResult>) => void; reject: (e: unknown) => void } | null = null;
  private outcome: { error: unknown } | { done: true } | null = null;
  private lastEventId: string | null = null;
  private readonly prefix: string;

  constructor(
    private readonly group: Group,
    private readonly transport: Transport,
  ) {
    this.prefix = `{"id":${JSON.stringify(transport.id)},"type":"next","payload":`;
  }

  deliver(payloadJson: string, eventId: string | null): void {
    const { socket } = this.transport;
    if (socket.readyState !== socket.OPEN || this.outcome) return;
    if (socket.bufferedAmount > this.group.options.maxBufferedBytes) {
      this.group.counters.lagging++;
      this.end({
        error: new EngineError(
          'SUBSCRIPTION_LAGGING',
          `the subscription fell too far behind its events and was ended; resume it with after: ${this.lastEventId === null ? 'null (select eventId to resume)' : `"${this.lastEventId}"`}`,
          { lastEventId: this.lastEventId },
        ),
      });
      return;
    }
    corkUntilTurnEnds(socket);
    socket.send(this.prefix + payloadJson + '}');
    this.lastEventId = eventId ?? this.lastEventId;
  }

  get bufferedBytes(): number {
    return this.transport.socket.bufferedAmount;
  }

  end(outcome: { error: unknown } | { done: true }): void {
    if (this.outcome) return;
    this.outcome = outcome;
    this.group.leave(this);
    const settle = this.settle;
    this.settle = null;
    if (!settle) return;
    if ('error' in outcome) settle.reject(outcome.error);
    else settle.resolve({ value: undefined, done: true });
  }

  /** Nothing is yielded here: results go straight to the socket. next() settles when it ends. */
  next(): Promise<IteratorResult<ExecutionResult>> {
    if (this.outcome) {
      if ('error' in this.outcome) {
        const { error } = this.outcome;
        this.outcome = { done: true };
        return Promise.reject(error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => (this.settle = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    this.end({ done: true });
    return { value: undefined, done: true };
  }

  async throw(error: unknown): Promise<IteratorResult<ExecutionResult>> {
    this.end({ done: true });
    throw error;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecutionResult> {
    return this;
  }
}

class Group {
  readonly members = new Set<Member>();
  private source: AsyncIterableIterator<ExecutionResult> | null = null;
  private closed = false;
  constructor(
    readonly key: string,
    readonly options: SharingOptions,
    private readonly groups: Map<string, Group>,
    readonly counters: { lagging: number },
  ) {}

  /** Starts passing on what `source` yields; members may have joined while it was being made. */
  start(source: AsyncIterableIterator<ExecutionResult>): void {
    this.source = source;
    if (this.members.size === 0) this.leave(null);
    else void this.pump(source);
  }

  private async pump(source: AsyncIterableIterator<ExecutionResult>): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await source.next();
        if (done) break;
        const result = value.errors ? { ...value, errors: this.options.formatErrors(value.errors) } : value;
        const json = JSON.stringify(result);
        const eventId = eventIdOf(value);
        for (const member of this.members) member.deliver(json, eventId);
      }
      this.close({ done: true });
    } catch (error) {
      this.close({ error });
    }
  }

  close(outcome: { error: unknown } | { done: true }): void {
    if (this.groups.get(this.key) === this) this.groups.delete(this.key);
    this.closed = true;
    for (const member of [...this.members]) member.end(outcome);
  }

  join(transport: Transport): Member {
    const member = new Member(this, transport);
    this.members.add(member);
    return member;
  }

  leave(member: Member | null): void {
    if (member) this.members.delete(member);
    if (this.members.size > 0) return;
    if (this.groups.get(this.key) === this) this.groups.delete(this.key);
    if (this.source && !this.closed) {
      this.closed = true;
      void this.source.return?.();
    }
  }
}

export interface SubscriptionSharing {
  /** Registers where a context's results go (graphql-ws' onSubscribe); returns the context. */
  bind<C extends object>(contextValue: C, transport: Transport): C;
  /** graphql-ws' `subscribe` option. */
  subscribe(args: ExecutionArgs): OperationResult;
  stats(): SharingStats;
}

export interface SharingStats {
  groups: number;
  members: number;
  /** Members ended because their socket had more than maxBufferedBytes waiting. */
  lagging: number;
  /** Bytes waiting in members' sockets to be sent. */
  bufferedBytes: number;
}

export function createSubscriptionSharing(
  options: SharingOptions & {
    /**
     * The context the group's one execution runs with: the first member's, told how many client
     * subscriptions it serves (the relay counts each of them as live).
     */
    groupContext(contextValue: unknown, subscribers: () => number): unknown;
  },
): SubscriptionSharing {
  const groups = new Map<string, Group>();
  const counters = { lagging: 0 };
  return {
    bind(contextValue, transport) {
      transports.set(contextValue, transport);
      return contextValue;
    },
    async subscribe(args) {
      const transport = args.contextValue ? transports.get(args.contextValue as object) : undefined;
      if (!options.enabled || !transport || resumes(args)) return subscribe(args);
      const key = `${transport.scope}\u0000${documentKey(args.document)}\u0000${args.operationName ?? ''}\u0000${stableJson(args.variableValues ?? {})}`;
      const existing = groups.get(key);
      if (existing) return existing.join(transport);
      const group = new Group(key, options, groups, counters);
      groups.set(key, group);
      const member = group.join(transport);
      const source = await subscribe({ ...args, contextValue: options.groupContext(args.contextValue, () => group.members.size) });
      if (!(Symbol.asyncIterator in source)) {
        // arguments refused: this client gets the result with the errors, and any identical
        // subscription that joined meanwhile the same error
        const first = source.errors?.[0];
        group.close({ error: first?.originalError ?? first ?? new Error('subscription refused') });
        return source;
      }
      group.start(source);
      return member;
    },
    stats() {
      let members = 0;
      let bufferedBytes = 0;
      for (const group of groups.values()) {
        members += group.members.size;
        for (const member of group.members) bufferedBytes += member.bufferedBytes;
      }
      return { groups: groups.size, members, lagging: counters.lagging, bufferedBytes };
    },
  };
}
