/**
 * `npm run worker`: the scheduler worker as a process of its own, beside one or more servers on the
 * same Redis (set WORKER_ENABLED=false on the servers to leave all scheduling to it). It finds Redis
 * as the server does (src/redis/connect.ts): REDIS_URL, a Redis 7 at LOCAL_REDIS_URL, or the private
 * redis-server of DATA_DIR, which it shares with the servers on that directory (starting it if it is
 * the first process there).
 */
import { engineOptions, readConfig } from '../config.js';
import { Engine } from '../app/engine.js';
import { createLog, flushLogs } from '../log.js';
import { connectRedis, describeTarget, isCluster } from '../redis/client.js';
import { resolveRedis } from '../redis/connect.js';
import { loadFunctions, reloadFunctions } from '../redis/functions.js';
import { startupFailureLine } from '../startup.js';
import { SchedulerWorker } from './scheduler.worker.js';

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLog(config.logLevel, config.logFormat);
  const resolved = await resolveRedis({ redisCluster: config.redisCluster, redisUrl: config.redisUrl, localUrl: config.localRedisUrl, dataDir: config.dataDir, log });
  const redis = connectRedis(resolved.target, { maxRetriesPerRequest: 1 });
  // the worker says when Redis goes away and when it returns; the client's own errors stay quiet
  redis.on('error', () => {});
  try {
    await loadFunctions(redis, { log });
  } catch (err) {
    redis.disconnect();
    await resolved.stop();
    throw err;
  }
  // a Redis that restarts empty has lost the functions: load them again when the connection returns
  redis.on('ready', () => {
    loadFunctions(redis, { log }).catch((err: Error) => log(`redis: could not load functions after reconnect: ${err.message}`));
  });
  // a primary added to the cluster, or promoted by a failover: it may lack the functions
  if (isCluster(redis)) redis.on('+node', () => void reloadFunctions(redis, log).catch(() => {}));
  const worker = new SchedulerWorker(new Engine(redis, engineOptions(config)), {
    tenants: config.worker.tenants,
    redis,
    tickMs: config.worker.tickMs,
    leaseMs: config.worker.leaseMs,
    maxAttempts: config.worker.maxAttempts,
    log,
  });
  worker.start();
  log(`scheduler worker running on ${describeTarget(resolved.target)} for ${config.worker.tenants ? `tenants ${config.worker.tenants.join(', ')}` : 'every tenant with due entries'} (tick ${config.worker.tickMs} ms)`);

  const shutdown = (signal: string) => {
    log(`${signal}: stopping the worker`);
    worker
      .stop()
      .then(() => redis.quit().catch(() => redis.disconnect()))
      .then(() => resolved.stop())
      .then(
        () => 0,
        () => 1,
      )
      .then(async (code) => {
        await flushLogs();
        process.exit(code);
      });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`atomflow worker: ${startupFailureLine(err, process.env.NODE_ENV === 'development')}\n`);
  process.exit(1);
});
