/**
 * Event ids are the ids of the tenant's Redis Stream entries (`<ms>-<seq>`). They order every event of
 * a tenant, which is what lets a subscriber resume after one and the relay drop what it already sent.
 */
import { badInput } from '../engine/errors.js';

/** `"0"` asks for the oldest retained event; anything else must be a stream id. */
const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;

export type StreamId = readonly [ms: bigint, seq: bigint];

export function parseStreamId(text: string): StreamId | null {
  const match = STREAM_ID.exec(text);
  if (!match) return null;
  return [BigInt(match[1]!), BigInt(match[2]!)];
}

/** An `after` argument: "0" (from the oldest retained event) or an eventId. */
export function parseAfter(value: string): StreamId {
  if (value === '0') return [0n, 0n];
  const id = parseStreamId(value);
  if (!id) throw badInput(`after must be an eventId such as 1764400000000-0, or "0" for the oldest retained event (got ${JSON.stringify(value.slice(0, 40))})`);
  return id;
}

export function compareStreamIds(a: StreamId, b: StreamId): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return 0;
}

export function formatStreamId(id: StreamId): string {
  return `${id[0]}-${id[1]}`;
}
