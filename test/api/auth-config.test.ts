/**
 * Authentication settings: the README's configuration table matches the code's defaults, production
 * refuses to start without a key (one clear line naming the variable), public keys (RS256, ES256)
 * with issuer and audience, and `npm run token` printing a token the server accepts.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { ConfigError, readConfig } from '../../src/config.js';
import { createAuthenticator } from '../../src/auth/tokens.js';
import { startTestServer, TEST_JWT_SECRET, testConfig, type TestServer } from './harness.js';

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

function run(script: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(script), ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('configuration', () => {
  it('defaults: development, introspection on, no key (the development secret), the worker finds tenants itself', () => {
    const config = readConfig({});
    expect(config.nodeEnv).toBe('development');
    expect(config.production).toBe(false);
    expect(config.introspection).toBe(true);
    expect(config.auth).toEqual({ secret: null, publicKey: null, issuer: null, audience: null });
    expect(config.worker.tenants).toBeNull();
    expect(config.corsOrigins).toEqual([]);
  });

  it("the README's configuration table matches the code: every variable, every default", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Walkthrough'));
    const rows = new Map([...table.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]));
    const source = readFileSync(new URL('../../src/config.ts', import.meta.url), 'utf8');
    const read = new Set([...source.matchAll(/(?:env\.|env, '|\(env, ')([A-Z][A-Z_]+)/g)].map((m) => m[1]!));
    expect([...read].filter((name) => !rows.has(name))).toEqual([]);
    const c = readConfig({});
    const defaults: Record<string, unknown> = {
      PORT: c.port,
      HOST: c.host,
      LOCAL_REDIS_URL: c.localRedisUrl,
      DATA_DIR: c.dataDir,
      WORKER_ENABLED: c.worker.enabled,
      WORKER_TICK_MS: c.worker.tickMs,
      WORKER_LEASE_MS: c.worker.leaseMs,
      EVENT_STREAM_MAXLEN: c.streamMaxLen,
      NODE_ENV: c.nodeEnv,
      LOG_LEVEL: c.logLevel,
      MAX_QUERY_COST: c.limits.maxCost,
      MAX_QUERY_DEPTH: c.limits.maxDepth,
      MAX_ALIASES: c.limits.maxAliases,
      MAX_ROOT_FIELDS: c.limits.maxRootFields,
      MAX_MUTATION_FIELDS: c.limits.maxMutationFields,
      WS_MAX_CONNECTIONS: c.limits.wsMaxConnections,
      WS_MAX_SUBSCRIPTIONS: c.limits.wsMaxSubscriptions,
      RATE_LIMIT_PER_S: c.limits.ratePerSecond,
      RATE_LIMIT_BURST: c.limits.rateBurst,
    };
    for (const [name, value] of Object.entries(defaults)) expect(rows.get(name), name).toBe(`\`${value}\``);
    for (const name of ['REDIS_URL', 'WORKER_TENANTS', 'AUTH_JWT_SECRET', 'AUTH_JWT_PUBLIC_KEY', 'AUTH_JWT_ISSUER', 'AUTH_JWT_AUDIENCE']) {
      expect(rows.get(name), name).toBe('unset');
    }
    expect(rows.get('GRAPHQL_INTROSPECTION')).toMatch(/^`true` outside production, `false` in production/);
    expect(readConfig({ NODE_ENV: 'production', AUTH_JWT_SECRET: TEST_JWT_SECRET }).introspection).toBe(false);
    expect(readConfig({ NODE_ENV: 'production', AUTH_JWT_SECRET: TEST_JWT_SECRET, GRAPHQL_INTROSPECTION: 'true' }).introspection).toBe(true);
  });

  it('refuses keys that cannot be right, naming the variable', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ NODE_ENV: 'production' }, /^AUTH_JWT_SECRET \(or AUTH_JWT_PUBLIC_KEY\) must be set when NODE_ENV=production$/],
      [{ AUTH_JWT_SECRET: 'short' }, /AUTH_JWT_SECRET must be at least 32 bytes/],
      [{ AUTH_JWT_SECRET: TEST_JWT_SECRET, AUTH_JWT_PUBLIC_KEY: 'x' }, /AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY, not both/],
      [{ AUTH_JWT_PUBLIC_KEY: 'not a pem' }, /AUTH_JWT_PUBLIC_KEY must be a PEM public key/],
      [{ CORS_ORIGINS: 'https://ok.example, *' }, /CORS_ORIGINS must be comma-separated origins/],
      [{ CORS_ORIGINS: 'https://app.example.com/path' }, /CORS_ORIGINS/],
      [{ MAX_MUTATION_FIELDS: '0' }, /MAX_MUTATION_FIELDS must be an integer from 1/],
      [{ WORKER_TENANTS: 'a,{b}' }, /WORKER_TENANTS/],
    ];
    for (const [env, message] of bad) {
      expect(() => readConfig(env), JSON.stringify(env)).toThrow(ConfigError);
      expect(() => readConfig(env)).toThrow(message);
    }
  });

  it('NODE_ENV=production without a key: npm start exits 1 with one line naming the variable', async () => {
    const result = await run('src/main.ts', [], { NODE_ENV: 'production', PORT: '0' });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('atomflow: AUTH_JWT_SECRET (or AUTH_JWT_PUBLIC_KEY) must be set when NODE_ENV=production\n');
  });
});

describe('public keys, issuer and audience', () => {
  const exp = () => Math.floor(Date.now() / 1000) + 600;
  const QUERY = `{ stateMachines { name } }`;

  it('ES256: accepts tokens of the private key; refuses HS256 made with the public key as secret, and other keys', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const s = await startTestServer({ config: { auth: { ...testConfig().auth, secret: null, publicKey: pem } } });
    servers.push(s);
    const claims = { tenant: s.tenant, role: 'admin' };
    const good = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setSubject('idp-admin').setExpirationTime(exp()).sign(privateKey);
    expect((await s.gql(QUERY, undefined, { token: good })).errors).toBeUndefined();
    const confused = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('x').setExpirationTime(exp()).sign(new TextEncoder().encode(pem));
    const otherKey = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setSubject('x').setExpirationTime(exp()).sign(other.privateKey);
    for (const token of [confused, otherKey, await s.token()]) {
      const res = await s.gql(QUERY, undefined, { token });
      expect(res.status).toBe(401);
      expect(res.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    }
  });

  it('RS256 with AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE: only tokens naming both get in', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    // a PEM in one line, with \n for newlines, as environment variables often carry it
    const config = readConfig({ AUTH_JWT_PUBLIC_KEY: pem.replace(/\n/g, '\\n'), AUTH_JWT_ISSUER: 'https://idp.example', AUTH_JWT_AUDIENCE: 'atomflow' });
    const s = await startTestServer({ config: { auth: config.auth } });
    servers.push(s);
    const sign = (iss?: string, aud?: string) => {
      let jwt = new SignJWT({ tenant: s.tenant, role: 'service' }).setProtectedHeader({ alg: 'RS256' }).setSubject('svc').setExpirationTime(exp());
      if (iss) jwt = jwt.setIssuer(iss);
      if (aud) jwt = jwt.setAudience(aud);
      return jwt.sign(privateKey);
    };
    expect((await s.gql(QUERY, undefined, { token: await sign('https://idp.example', 'atomflow') })).errors).toBeUndefined();
    for (const token of [await sign(), await sign('https://idp.example'), await sign(undefined, 'atomflow'), await sign('https://evil.example', 'atomflow'), await sign('https://idp.example', 'other')]) {
      expect((await s.gql(QUERY, undefined, { token })).status).toBe(401);
    }
  });
});

describe('npm run token', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    servers.push(t);
  });

  it('prints a token the server accepts, with the tenant, role, sub and ttl asked for', async () => {
    const result = await run('scripts/token.ts', ['--tenant', t.tenant, '--role', 'user', '--sub', 'alice', '--ttl', '1h'], { AUTH_JWT_SECRET: TEST_JWT_SECRET });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const token = result.stdout.trim();
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
    expect(claims).toMatchObject({ tenant: t.tenant, role: 'user', sub: 'alice' });
    expect(claims.exp * 1000 - Date.now()).toBeGreaterThan(3590_000);
    expect(claims.exp * 1000 - Date.now()).toBeLessThanOrEqual(3600_000);
    expect((await t.gql(`{ account(id: "alice") { id } }`, undefined, { token })).errors).toBeUndefined();
    expect((await t.gql(`{ product(id: "p") { id } }`, undefined, { token })).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('refuses a bad role, a user without --sub, and a public-key setup, with a message', async () => {
    const env = { AUTH_JWT_SECRET: TEST_JWT_SECRET };
    const badRole = await run('scripts/token.ts', ['--role', 'root'], env);
    expect([badRole.code, badRole.stderr]).toEqual([1, 'atomflow token: --role must be one of admin, service, user, got "root"\n']);
    const noSub = await run('scripts/token.ts', ['--role', 'user'], env);
    expect(noSub.code).toBe(1);
    expect(noSub.stderr).toMatch(/--sub is required/);
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const publicOnly = await run('scripts/token.ts', [], { AUTH_JWT_PUBLIC_KEY: pem });
    expect(publicOnly.code).toBe(1);
    expect(publicOnly.stderr).toMatch(/AUTH_JWT_PUBLIC_KEY is set/);
  });
});

describe('verified tokens are remembered only until they expire', () => {
  it('a token accepted once is refused once its exp has passed', async () => {
    const auth = await createAuthenticator({ secret: TEST_JWT_SECRET, publicKey: null, issuer: null, audience: null }, os.tmpdir());
    const token = await auth.sign({ sub: 'short', tenant: 'ttl-test', role: 'admin' }, 2);
    expect(await auth.authenticate(`Bearer ${token}`)).toMatchObject({ sub: 'short', tenant: 'ttl-test' });
    // accepted again (from memory) while valid...
    expect(await auth.authenticate(`Bearer ${token}`)).toMatchObject({ sub: 'short' });
    // ...and refused once it has expired, memory or not
    await expect
      .poll(() => auth.authenticate(`Bearer ${token}`).then(() => 'accepted', (err: Error) => err.message), { timeout: 5000, interval: 200 })
      .toMatch(/expired/);
  });
});
