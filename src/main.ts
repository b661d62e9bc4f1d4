/**
 * Process entry (`npm start`): read the config, start the server, stop cleanly on SIGTERM/SIGINT.
 */
import { ConfigError, readConfig } from './config.js';
import { createLog } from './log.js';
import { RedisUnavailableError } from './redis/connect.js';
import { FunctionLoadError } from './redis/functions.js';
import { createServer } from './server.js';

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLog(config.logLevel, config.logFormat);
  const server = await createServer(config, { log });
  log(`atomflow GraphQL endpoint: ${server.url}`);
  log(`board (open in a browser): ${new URL('/', server.url).href}`);
  if (config.playground) log(`playground (open in a browser): ${server.url}`);
  log(`metrics (Prometheus): ${new URL('/metrics', server.url).href}`);
  log(`subscriptions (graphql-ws): ${server.wsUrl}`);
  log(`redis: ${server.redisUrl}; scheduler worker ${server.worker ? 'on' : 'off'}`);

  let signalled = false;
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = true;
    log(`${signal}: stopping`);
    server.stop().then(
      () => {
        log('stopped');
        process.exit(0);
      },
      (err: Error) => {
        log(`error while stopping: ${err.message}`, { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof RedisUnavailableError || err instanceof FunctionLoadError) {
    process.stderr.write(`atomflow: ${err.message}\n`);
  } else {
    process.stderr.write(`atomflow: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
});
