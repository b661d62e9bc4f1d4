/**
 * Process entry (`npm start`): read the config, start the server, stop cleanly on SIGTERM/SIGINT.
 */
import { readConfig } from './config.js';
import { createLog } from './log.js';
import { createServer } from './server.js';
import { startupFailureLine } from './startup.js';

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLog(config.logLevel);
  const server = await createServer(config, { log });
  log(`atomflow GraphQL endpoint: ${server.url}`);
  log(`playground (open in a browser): ${server.url}`);
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
        log(`error while stopping: ${err.message}`);
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
