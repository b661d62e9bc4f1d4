/**
 * `npm run worker`: the scheduler worker as a process of its own, beside one or more servers on the
 * same Redis (set WORKER_ENABLED=false on the servers to leave all scheduling to it). It needs the
 * Redis the servers use: REDIS_URL, or a Redis 7 at 127.0.0.1:6379; it never starts one of its own.
 */
import { Redis } from 'ioredis';
import { ConfigError, readConfig } from '../config.js';
import { Engine } from '../engine/engine.js';
import { createLog } from '../log.js';
import { probeRedis } from '../redis/connect.js';
import { FunctionLoadError, loadFunctions } from '../redis/functions.js';
import { SchedulerWorker } from './scheduler.worker.js';

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLog(config.logLevel);
  const url = config.redisUrl ?? config.localRedisUrl;
  if (!config.redisUrl && (await probeRedis(url)) === null) {
    throw new ConfigError(`no Redis answers at ${url}: set REDIS_URL to the Redis your atomflow server uses`);
  }
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on('error', (err) => log(`redis: ${err.message}`));
  await loadFunctions(redis, { log });
  const worker = new SchedulerWorker(new Engine(redis, { streamMaxLen: config.streamMaxLen }), {
    tenants: config.worker.tenants,
    redis,
    tickMs: config.worker.tickMs,
    leaseMs: config.worker.leaseMs,
    log,
  });
  worker.start();
  log(`scheduler worker running on ${url} for ${config.worker.tenants ? `tenants ${config.worker.tenants.join(', ')}` : 'every tenant with due entries'} (tick ${config.worker.tickMs} ms)`);

  const shutdown = (signal: string) => {
    log(`${signal}: stopping the worker`);
    worker
      .stop()
      .then(() => redis.quit())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  const known = err instanceof ConfigError || err instanceof FunctionLoadError;
  process.stderr.write(`atomflow worker: ${known ? (err as Error).message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
