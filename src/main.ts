/**
 * Process entry (`npm start`): read the config, start the server, stop cleanly on SIGTERM/SIGINT.
 */
import { readConfig } from './config.js';
import { createLog } from './log.js';
import { createServer } from './server.js';
import { startupFailureLine } from './startup.js';

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
  process.stderr.write(`atomflow: ${startupFailureLine(err, process.env.NODE_ENV === 'development')}\n`);
  process.exit(1);
});
