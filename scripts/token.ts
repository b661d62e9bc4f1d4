/**
 * `npm run token -- --tenant acme --role user --sub alice [--ttl 1h]`: prints a token signed with the
 * configured AUTH_JWT_SECRET (or, outside production with no key set, the development secret in the
 * data directory, the one `npm start` uses). With AUTH_JWT_PUBLIC_KEY, tokens come from the identity
 * provider holding the private key, so this command refuses.
 */
import { parseArgs } from 'node:util';
import { ConfigError, readConfig } from '../src/config.js';
import { createAuthenticator, parseTtl, ROLES, type Role } from '../src/auth/tokens.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tenant: { type: 'string', default: 'default' },
      role: { type: 'string', default: 'admin' },
      sub: { type: 'string' },
      ttl: { type: 'string', default: '1h' },
    },
    strict: true,
  });
  const role = values.role as Role;
  if (!ROLES.includes(role)) throw new ConfigError(`--role must be one of ${ROLES.join(', ')}, got "${values.role}"`);
  const sub = values.sub ?? (role === 'user' ? undefined : role);
  if (!sub) throw new ConfigError('--sub is required for --role user (the account id)');
  const config = readConfig();
  if (config.auth.publicKey) throw new ConfigError('AUTH_JWT_PUBLIC_KEY is set: tokens are issued by whoever holds the private key, not by npm run token');
  const auth = await createAuthenticator(config.auth, config.dataDir);
  process.stdout.write(`${await auth.sign({ sub, tenant: values.tenant!, role }, parseTtl(values.ttl!))}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`atomflow token: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
