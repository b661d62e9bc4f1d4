/**
 * Process entry (`npm start`): read the config, start the server, stop cleanly on SIGTERM/SIGINT.
 */
import { ConfigError, readConfig } from './config.js';
import { createLog } from './log.js';
import { RedisUnavailableError } from './redis/connect.js';
import { FunctionLoadError } from './redis/functions.js';
import { createServer } from './server.js';
import { DEFAULT_TENANT } from './graphql/context.js';

const DEV_TOKEN_TTL_S = 24 * 3600;

async function main(): Promise<void> {
  const config = readConfig();
  const log = createLog(config.logLevel);
  const server = await createServer(config, { log });
  log(`atomflow GraphQL endpoint: ${server.url}`);
  log(`playground (open in a browser): ${server.url}`);
  log(`subscriptions (graphql-ws): ${server.wsUrl}`);
  log(`redis: ${server.redisUrl}; scheduler worker ${server.worker ? 'on' : 'off'}`);
  if (server.auth.devSecretFile) {
    // outside production with no key configured: a ready-to-use token, signed with the development secret
    const token = await server.auth.sign({ sub: 'admin', tenant: DEFAULT_TENANT, role: 'admin' }, DEV_TOKEN_TTL_S);
    log(`no AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY: signing with the development secret in ${server.auth.devSecretFile}`);
    log(`admin token for tenant ${DEFAULT_TENANT} (24 h; more with npm run token): ${token}`);
  }

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
  if (err instanceof ConfigError || err instanceof RedisUnavailableError || err instanceof FunctionLoadError) {
    process.stderr.write(`atomflow: ${err.message}\n`);
  } else {
    process.stderr.write(`atomflow: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
});
