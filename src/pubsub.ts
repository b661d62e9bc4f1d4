/**
 * Subscriptions relay what the Lua functions PUBLISH. RedisPubSub (graphql-redis-subscriptions) runs
 * on its own subscriber connection, shares one Redis SUBSCRIBE per channel among all listeners of
 * this process, and parses each message as JSON. type-graphql 2 wants a `pubSub` with
 * publish/subscribe; subscribe() here returns an async iterator over RedisPubSub's subscribe/unsubscribe
 * that subscribes at once (not on the first next()) and counts its live listeners, so that callers
 * (readiness checks, tests) can wait on a subscription being live instead of sleeping.
 *
 * A SUBSCRIBE is sent only on a connection that is `ready`. ioredis writes SUBSCRIBE straight away
 * while a new connection is still in its handshake (status `connect`); Redis then refuses the ready
 * check's INFO in subscriber mode, ioredis drops the connection and resubscribes ~50 ms later, and
 * every event published in between is lost although the SUBSCRIBE was confirmed. A listener is
 * counted live only once its SUBSCRIBE is confirmed on a ready connection: from then on it receives
 * every event published (the guarantee in the README's "Live events").
 */
import type { Redis, RedisOptions } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import type { PubSub } from 'type-graphql';

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

  /** Resolves once the subscriber connection has finished its handshake (see the header). */
  function whenReady(): Promise<void> {
    if (subscriber.status === 'ready') return Promise.resolve();
    if (subscriber.status === 'end') return Promise.reject(new Error('the event relay is closed'));
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

  function listen(topic: string): AsyncIterableIterator<unknown> {
    const queue: unknown[] = [];
    const waiting: ((result: IteratorResult<unknown>) => void)[] = [];
    let done = false;
    let confirmed = false;
    const onMessage = (message: unknown) => {
      if (done) return;
      const next = waiting.shift();
      if (next) next({ value: message, done: false });
      else {
        queue.push(message);
        if (queue.length > MAX_QUEUED_EVENTS) queue.shift();
      }
    };
    const subscription = whenReady().then(() => redisPubSub.subscribe(topic, onMessage));
    subscription.then(
      () => {
        if (done) return;
        confirmed = true;
        count(topic, 1);
      },
      () => {},
    );
    async function finish(): Promise<void> {
      if (done) return;
      done = true;
      waiting.splice(0).forEach((resolve) => resolve({ value: undefined, done: true }));
      queue.length = 0;
      if (confirmed) count(topic, -1);
      const id = await subscription.catch(() => null); // a failed SUBSCRIBE has nothing to undo
      if (id !== null) redisPubSub.unsubscribe(id);
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
