/**
 * The Redis client atomflow talks through: one ioredis `Redis` (REDIS_URL, a local or private Redis)
 * or an ioredis `Cluster` (REDIS_CLUSTER_NODES). Both take the same commands; a cluster client sends
 * each to the primary owning the key's slot and follows MOVED/ASK itself. What differs is what acts
 * on every node (loading functions, SCAN, sharded pub/sub): the helpers here give those the nodes.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';

export type RedisClient = Redis | Cluster;

export interface ClusterTarget {
  seeds: { host: string; port: number }[];
  /** What each node connection uses: credentials, TLS. */
  nodeOptions: RedisOptions;
}

/** Where Redis is: one server's URL, or a cluster's seeds. */
export type RedisTarget = string | ClusterTarget;

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/** `host:port` of a node connection, as ioredis names nodes in `Cluster.slots`. */
export function nodeKey(node: Redis): string {
  return `${node.options.host}:${node.options.port}`;
}

/**
 * A client on `target` with `options` (per node on a cluster). The cluster client keeps the
 * single-node defaults atomflow relies on: commands fail fast while a node is away (MOVED, ASK and
 * TRYAGAIN are retried by the client) and reads go to primaries.
 */
export function connectRedis(target: RedisTarget, options: RedisOptions = {}): RedisClient {
  if (typeof target === 'string') return new Redis(target, options);
  // per-connection retries are the cluster's own business (clusterRetryStrategy), not a node's
  const { retryStrategy: _retry, enableOfflineQueue, lazyConnect, ...nodeOptions } = options;
  return new Cluster(target.seeds, {
    redisOptions: { ...target.nodeOptions, ...nodeOptions },
    scaleReads: 'master',
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
  });
}

/** The address the start-up log shows: the URL as given, or the cluster's seeds. */
export function describeTarget(target: RedisTarget): string {
  return typeof target === 'string' ? target : `redis cluster ${target.seeds.map((s) => `${s.host}:${s.port}`).join(',')}`;
}

/**
 * Every primary of the cluster as CLUSTER NODES lists it now, slot-less ones included (a primary
 * just added owns no slot, so the client does not know it, yet an ASK may send a call there).
 */
export async function clusterPrimaries(cluster: Cluster): Promise<{ host: string; port: number }[]> {
  const text = String(await cluster.cluster('NODES'));
  const primaries: { host: string; port: number }[] = [];
  for (const line of text.split('\n')) {
    const [, address, flags] = line.split(' ');
    if (!address || !flags) continue;
    const roles = flags.split(',');
    if (!roles.includes('master') || roles.includes('fail') || roles.includes('noaddr')) continue;
    const hostPort = address.split('@')[0]!;
    const colon = hostPort.lastIndexOf(':');
    primaries.push({ host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)) });
  }
  return primaries;
}

/**
 * Runs `use` on each primary (one server: on it). Cluster primaries get a connection of their own
 * with the cluster's node options, closed afterwards: this is for rare work (loading functions).
 */
export async function onEveryPrimary<T>(client: RedisClient, use: (node: Redis, address: string) => Promise<T>): Promise<T[]> {
  if (!isCluster(client)) return [await use(client, `${client.options.host}:${client.options.port}`)];
  const primaries = await clusterPrimaries(client);
  return Promise.all(
    primaries.map(async ({ host, port }) => {
      const node = new Redis({ ...client.options.redisOptions, host, port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
      node.on('error', () => {});
      try {
        await node.connect();
        return await use(node, `${host}:${port}`);
      } finally {
        node.disconnect();
      }
    }),
  );
}

/** CRC16-CCITT (XMODEM), the hash Redis Cluster takes of a key. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/**
 * The hash slot of a key (or a shard channel), computed here as Redis does (CRC16 of the hash tag,
 * the text between the first `{` and the next `}` when not empty, else of the whole key, mod 16384):
 * no round trip, and nothing to fail while the client's connections are still settling.
 */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open === -1 ? -1 : key.indexOf('}', open + 1);
  const hashed = close > open + 1 ? key.slice(open + 1, close) : key;
  return crc16(Buffer.from(hashed, 'utf8')) % 16384;
}

/** The `host:port` of the primary the client believes owns `slot`, or null while it does not know. */
export function ownerOf(cluster: Cluster, slot: number): string | null {
  return cluster.slots[slot]?.[0] ?? null;
}

/** The `host:port` of the primary owning `slot`, refreshing the client's slot map once when it has none yet. */
export async function slotOwner(cluster: Cluster, slot: number, refresh = false): Promise<string> {
  let owner = refresh ? null : ownerOf(cluster, slot);
  if (!owner) {
    await new Promise<void>((resolve) => cluster.refreshSlotsCache(() => resolve()));
    owner = ownerOf(cluster, slot);
  }
  if (!owner) throw new Error(`the cluster client knows no owner of slot ${slot}`);
  return owner;
}

/** The client's connection to the primary owning `key`'s slot. */
export async function primaryFor(cluster: Cluster, key: string): Promise<Redis> {
  const owner = await slotOwner(cluster, keySlot(key));
  const node = cluster.nodes('master').find((n) => nodeKey(n) === owner);
  if (!node) throw new Error(`no connection to the primary ${owner}`);
  return node;
}
