/**
 * Subscriptions relay what the Lua functions PUBLISH. RedisPubSub (graphql-redis-subscriptions) runs
 * on its own subscriber connection, shares one Redis SUBSCRIBE per channel among all listeners of
 * this process, and parses each message as JSON. type-graphql 2 wants a `pubSub` with
 * publish/subscribe; subscribe() here returns an async iterator over RedisPubSub's subscribe/unsubscribe
 * that subscribes at once (not on the first next()) and counts its live listeners, so that callers
 * (readiness checks, tests) can wait on a subscription being live instead of sleeping.
 */
import type { Redis, RedisOptions } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import type { PubSub } from 'type-graphql';
import { activeSubscriptions, eventKind, eventsDropped, eventsRelayed } from './metrics.js';

/** A listener that falls this far behind loses its oldest undelivered events. */
const MAX_QUEUED_EVENTS = 10_000;

export interface EventRelay {
  pubSub: PubSub;
  /** The connection in SUBSCRIBE mode. */
  subscriber: Redis;
  /** Listeners on `topic` in this process whose Redis subscription is confirmed. */
  listenerCount(topic: string): number;
  close(): Promise<void>;
}

export function createEventRelay(redisUrl: string, options: RedisOptions = {}): EventRelay {
  // Nothing is published from TypeScript (the functions PUBLISH), so the publisher never connects.
  const publisher = new RedisClient(redisUrl, { ...options, lazyConnect: true });
  const subscriber = new RedisClient(redisUrl, options);
  publisher.on('error', () => {});
  subscriber.on('error', () => {});
  const redisPubSub = new RedisPubSub({ publisher, subscriber });
  const live = new Map<string, number>();
  const count = (topic: string, delta: number) => live.set(topic, (live.get(topic) ?? 0) + delta);

  function listen(topic: string): AsyncIterableIterator<unknown> {
    const queue: unknown[] = [];
    const waiting: ((result: IteratorResult<unknown>) => void)[] = [];
    let done = false;
    let confirmed = false;
    const kind = eventKind(topic);
    const subscription = redisPubSub.subscribe(topic, (message: unknown) => {
      if (done) return;
      eventsRelayed.inc({ kind });
      const next = waiting.shift();
      if (next) next({ value: message, done: false });
      else {
        queue.push(message);
        if (queue.length > MAX_QUEUED_EVENTS) {
          queue.shift();
          eventsDropped.inc({ kind });
        }
      }
    });
    subscription.then(
      () => {
        if (done) return;
        confirmed = true;
        count(topic, 1);
        activeSubscriptions.inc({ kind });
      },
      () => {},
    );
    async function finish(): Promise<void> {
      if (done) return;
      done = true;
      waiting.splice(0).forEach((resolve) => resolve({ value: undefined, done: true }));
      queue.length = 0;
      if (confirmed) {
        count(topic, -1);
        activeSubscriptions.dec({ kind });
      }
      redisPubSub.unsubscribe(await subscription);
    }
    return {
      async next() {
        if (queue.length > 0) return { value: queue.shift(), done: false };
        if (done) return { value: undefined, done: true };
        await subscription; // surfaces a failed SUBSCRIBE to the client
        return new Promise<IteratorResult<unknown>>((resolve) => waiting.push(resolve));
      },
      async return() {
        await finish();
        return { value: undefined, done: true };
      },
      async throw(error: unknown) {
        await finish();
        throw error;
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  return {
    subscriber,
    pubSub: {
      publish: (topic: string, payload: unknown) => {
        void redisPubSub.publish(topic, payload);
      },
      subscribe: (topic: string) => listen(topic),
    },
    listenerCount: (topic) => live.get(topic) ?? 0,
    async close() {
      // disconnect rather than QUIT: a QUIT to a Redis that is down would wait for it
      subscriber.disconnect();
      publisher.disconnect();
    },
  };
}
