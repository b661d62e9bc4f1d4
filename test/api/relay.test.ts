/**
 * The event relay (src/events/relay.ts) on its own: a listener counted live receives every event published
 * after that point, including on a relay whose Redis connection is still in its handshake.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createEventRelay, type EventRelay } from '../../src/events/relay.js';
import { redisUrl, uniqueTenant } from '../setup/helpers.js';

const relays: EventRelay[] = [];
const clients: Redis[] = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.close()));
  clients.splice(0).forEach((c) => c.disconnect());
});

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('event relay', () => {
  it('a listener opened while the connection is still in its handshake is live only when it receives events, and the connection is never dropped', async () => {
    const tenant = uniqueTenant('relay');
    const channel = `atomflow:{${tenant}}:events:orders`;
    const stream = `atomflow:{${tenant}}:events`;
    const publisher = new Redis(redisUrl());
    clients.push(publisher);
    const relay = createEventRelay(redisUrl(), publisher);
    relays.push(relay);
    let reconnects = 0;
    relay.subscriber.on('reconnecting', () => reconnects++);

    // Subscribe in the window between the TCP connect and the end of ioredis' ready check: the window
    // in which a freshly started server instance accepts its first subscriptions.
    const listener = await new Promise<AsyncIterableIterator<unknown>>((resolve) =>
      relay.subscriber.once('connect', () => resolve(relay.listen({ channel, stream, kind: 'order' }))),
    );
    const received: unknown[] = [];
    const reading = (async () => {
      for await (const message of { [Symbol.asyncIterator]: () => listener }) received.push(message);
    })();

    await waitUntil(() => relay.listenerCount(channel) === 1, 'the listener to be live');
    // Events spread over ~300 ms: any reconnection of the subscriber connection would lose some.
    const sent = 15;
    for (let i = 0; i < sent; i++) {
      await publisher.publish(channel, JSON.stringify({ eventId: `${i + 1}-0`, type: 'ORDER_CONFIRMED', n: i }));
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitUntil(() => received.length >= sent, `${sent} events (got ${received.length})`).catch(() => {});
    expect(received).toEqual(Array.from({ length: sent }, (_, n) => ({ eventId: `${n + 1}-0`, type: 'ORDER_CONFIRMED', n })));
    expect(reconnects).toBe(0);
    expect(relay.subscriber.status).toBe('ready');

    await listener.return?.();
    await reading;
    expect(relay.listenerCount(channel)).toBe(0);
  });

  it('a resuming listener gets each event once when events arrive live while it is still replaying', async () => {
    const tenant = uniqueTenant('replay');
    const channel = `atomflow:{${tenant}}:events:orders`;
    const stream = `atomflow:{${tenant}}:events`;
    const redis = new Redis(redisUrl());
    clients.push(redis);
    const relay = createEventRelay(redisUrl(), redis);
    relays.push(relay);
    const add = async (n: number, publish: boolean) => {
      const data = JSON.stringify({ type: 'ORDER_CONFIRMED', n });
      const id = (await redis.xadd(stream, '*', 'type', 'ORDER_CONFIRMED', 'data', data))!;
      if (publish) await redis.publish(channel, `{"eventId":"${id}",${data.slice(1)}`);
    };
    for (let n = 0; n < 250; n++) await add(n, false); // three replay pages of 100

    const listener = relay.listen({ channel, stream, kind: 'order' }, { after: '0' });
    const first = await listener.next(); // the first page is read; the replay is not over
    expect(first.value).toMatchObject({ n: 0 });
    await waitUntil(() => relay.listenerCount(channel) === 1, 'the listener to be live');
    // ten events now: in the stream (so later replay pages hold them) and published live
    for (let n = 250; n < 260; n++) await add(n, true);
    await waitUntil(() => relay.stats().relayed >= 10, 'the live events to reach the listener');

    const rest: number[] = [];
    for (let i = 1; i < 260; i++) rest.push(((await listener.next()).value as { n: number }).n);
    expect(rest).toEqual(Array.from({ length: 259 }, (_, i) => i + 1));
    // nothing is left over: the next event is the next one published
    await add(260, true);
    expect((await listener.next()).value).toMatchObject({ n: 260 });
    await listener.return?.();
  });

  it('a listener on a closed relay fails instead of waiting forever', async () => {
    const reader = new Redis(redisUrl());
    clients.push(reader);
    const relay = createEventRelay(redisUrl(), reader);
    relays.push(relay);
    await new Promise((resolve) => relay.subscriber.once('ready', resolve));
    await relay.close();
    await waitUntil(() => relay.subscriber.status === 'end', 'the relay connection to end');
    const listener = relay.listen({ channel: 'atomflow:{closed}:events:orders', stream: 'atomflow:{closed}:events', kind: 'order' });
    await expect(listener.next()).rejects.toThrow(/closed/);
  });
});
