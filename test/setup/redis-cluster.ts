/**
 * A throw-away Redis Cluster on loopback: `redis-server --cluster-enabled yes` on free ports (no RDB,
 * no AOF, nodes.conf in a temporary directory), joined with `redis-cli --cluster create`, ready once
 * every node reports cluster_state:ok. Used by the cluster run of the API suite
 * (test/setup/redis-cluster-global.ts) and by the cluster tests that add a primary and move slots.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, stopChild } from './private-redis.js';

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  /** host:port, as REDIS_CLUSTER_NODES lists it. */
  address: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface TestCluster {
  nodes: ClusterNode[];
  /** Comma-separated host:port of every node: a REDIS_CLUSTER_NODES value. */
  seeds(): string;
  /** Starts one more (empty, slot-less, function-less) primary and joins it to the cluster. */
  addPrimary(): Promise<ClusterNode>;
  /** Moves one slot, with its keys, from the node that owns it to `to` (IMPORTING/MIGRATING + MIGRATE). */
  moveSlot(slot: number, to: ClusterNode): Promise<void>;
  /** The node that owns `slot` now. */
  ownerOf(slot: number): Promise<ClusterNode>;
  /**
   * A manual failover of the primary owning `slot` (CLUSTER FAILOVER on its replica: the replica
   * catches up, then takes over its slots); resolves once every node sees the replica as the owner.
   */
  failover(slot: number): Promise<ClusterNode>;
  stop(): Promise<void>;
}

async function startNode(dir: string): Promise<ClusterNode> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes',
      '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000',
      '--dir', dir,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.on('error', () => {});
  const node: ClusterNode = {
    port,
    address: `127.0.0.1:${port}`,
    process: child,
    stop: () => stopChild(child),
  };
  await waitFor(async () => (await withNode(port, (r) => r.ping())) === 'PONG', `redis-server on port ${port} to answer`, () => child.exitCode !== null);
  return node;
}

async function withNode<T>(port: number, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

async function waitFor(condition: () => Promise<boolean>, what: string, failed: () => boolean = () => false, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (failed()) throw new Error(`gave up waiting for ${what}`);
    try {
      if (await condition()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** The port of the node that owns `slot`, as the node at `port` sees it. */
async function slotOwnerPort(port: number, slot: number): Promise<number | null> {
  const slots = (await withNode(port, (r) => r.call('CLUSTER', 'SLOTS'))) as [number, number, [string, number]][];
  const range = slots.find(([from, to]) => slot >= from && slot <= to);
  return range ? Number(range[2][1]) : null;
}

/** Every node agrees: cluster_state:ok and the same number of known nodes. */
async function waitUntilConsistent(nodes: ClusterNode[]): Promise<void> {
  await waitFor(async () => {
    for (const node of nodes) {
      const info = await withNode(node.port, (r) => r.cluster('INFO'));
      if (!/cluster_state:ok/.test(info) || !new RegExp(`cluster_known_nodes:${nodes.length}\\b`).test(info)) return false;
    }
    return true;
  }, 'cluster_state:ok on every node');
}

/**
 * Starts `primaries` primaries (at least 3, as redis-cli requires), with `replicas` replicas each, and
 * creates the cluster.
 */
export async function startTestCluster(primaries = 3, replicas = 0): Promise<TestCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'atomflow-cluster-'));
  const nodes: ClusterNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < primaries * (1 + replicas); i++) nodes.push(await startNode(dir));
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes']);
    await waitUntilConsistent(nodes);
    // replicas in sync with their primaries (a failover's replica must hold the data and functions)
    await waitFor(async () => {
      for (const node of nodes) {
        const info = await withNode(node.port, (r) => r.info('replication'));
        if (/role:slave/.test(info) && !/master_link_status:up/.test(info)) return false;
      }
      return true;
    }, 'every replica in sync');
  } catch (err) {
    await stop();
    throw err;
  }
  const nodeIds = new Map<number, string>();
  const idOf = async (node: ClusterNode) => {
    if (!nodeIds.has(node.port)) nodeIds.set(node.port, String(await withNode(node.port, (r) => r.cluster('MYID'))));
    return nodeIds.get(node.port)!;
  };
  const cluster: TestCluster = {
    nodes,
    seeds: () => nodes.map((n) => n.address).join(','),
    async addPrimary() {
      const node = await startNode(dir);
      nodes.push(node);
      // CLUSTER MEET, not redis-cli --cluster add-node: Redis 7's redis-cli copies the functions
      // of an existing node onto the new one, and the tests must see atomflow load them itself
      await withNode(node.port, (r) => r.cluster('MEET', '127.0.0.1', nodes[0]!.port));
      await waitUntilConsistent(nodes);
      return node;
    },
    async ownerOf(slot) {
      const port = await slotOwnerPort(nodes[0]!.port, slot);
      const owner = nodes.find((n) => n.port === port);
      if (!owner) throw new Error(`no node owns slot ${slot}`);
      return owner;
    },
    async failover(slot) {
      const primary = await cluster.ownerOf(slot);
      const replicaLines = String(await withNode(primary.port, async (r) => r.call('CLUSTER', 'REPLICAS', await idOf(primary)))) ;
      const port = Number(/:(\d+)@/.exec(replicaLines)?.[1]);
      const replica = nodes.find((n) => n.port === port);
      if (!replica) throw new Error(`the primary of slot ${slot} has no replica`);
      await withNode(replica.port, (r) => r.cluster('FAILOVER'));
      await waitFor(async () => {
        for (const node of nodes) if ((await slotOwnerPort(node.port, slot)) !== replica.port) return false;
        return true;
      }, `every node to see slot ${slot} on ${replica.address}`);
      return replica;
    },
    async moveSlot(slot, to) {
      const from = await cluster.ownerOf(slot);
      if (from === to) return;
      const [fromId, toId] = [await idOf(from), await idOf(to)];
      await withNode(to.port, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId));
      await withNode(from.port, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId));
      await withNode(from.port, async (r) => {
        for (;;) {
          const keys = (await r.call('CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[];
          if (keys.length === 0) break;
          await r.call('MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys);
        }
      });
      // the new owner first, then the old one, then everyone (as redis-cli --cluster reshard does)
      for (const node of [to, from, ...nodes.filter((n) => n !== to && n !== from)]) {
        await withNode(node.port, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'NODE', toId));
      }
      await waitFor(async () => {
        for (const node of nodes) if ((await slotOwnerPort(node.port, slot)) !== to.port) return false;
        return true;
      }, `every node to see slot ${slot} on ${to.address}`);
    },
    stop,
  };
  return cluster;
}
