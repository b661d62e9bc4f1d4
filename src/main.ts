/**
 * Process entry (`npm start`): read the config, start the server, stop cleanly on SIGTERM/SIGINT.
 */
import { readConfig } from './config.js';
import { createLog, flushLogs } from './log.js';
import { createServer } from './server.js';
import { startupFailureLine } from './startup.js';
import { DEFAULT_TENANT } from './graphql/context.js';
import { describeTarget } from './redis/client.js';

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLog(config.logLevel, config.logFormat);
  // Signals are handled from the first moment: a SIGTERM during start-up waits for the start, then
  // stops what it started (a private Redis included) instead of killing the process half-way.
  const starting = createServer(config, { log });
  let signalled = false;
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = true;
    log(`${signal}: stopping`);
    starting
      .then((server) => server.stop())
      .then(
        () => {
          log('stopped');
          return 0;
        },
        (err: Error) => {
          log(`error while stopping: ${err.message}`, { err });
          return 1;
        },
      )
      .then(async (code) => {
        await flushLogs();
        process.exit(code);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  const server = await starting;
  log(`atomflow GraphQL endpoint: ${server.url}`);
  log(`board (open in a browser): ${new URL('/', server.url).href}`);
  if (config.playground) log(`playground (open in a browser): ${server.url}`);
  log(`metrics (Prometheus): ${new URL('/metrics', server.url).href}`);
  log(`subscriptions (graphql-ws): ${server.wsUrl}`);
  log(`redis: ${describeTarget(server.redisTarget)}; scheduler worker ${server.worker ? 'on' : 'off'}`);
  if (server.auth.devSecretFile && server.devToken) {
    // outside production with no key configured: a ready-to-use token, signed with the development secret
    log(`no AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY: signing with the development secret in ${server.auth.devSecretFile}`);
    log(`admin token for tenant ${DEFAULT_TENANT} (24 h; more with npm run token): ${server.devToken}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`atomflow: ${startupFailureLine(err, process.env.NODE_ENV === 'development')}\n`);
  process.exit(1);
});
