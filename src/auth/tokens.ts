/**
 * Who is calling: JWT bearer tokens, verified with jose. The key is AUTH_JWT_SECRET (HS256) or
 * AUTH_JWT_PUBLIC_KEY (PEM, RS256 or ES256); outside production with neither, a development secret
 * kept in the data directory (created on first start, reused after). A token carries `sub` (the
 * principal), `tenant` and `role`, and must carry `exp`; `iss`/`aud` are checked when configured.
 */
import { createPublicKey, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { AuthConfig } from '../config.js';

export const ROLES = ['admin', 'service', 'user'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  /** The `sub` claim: for a `user`, the account id. */
  sub: string;
  tenant: string;
  role: Role;
  /** When the token expires, in ms since the epoch. */
  expiresAt: number;
}

const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** File (in the data directory) holding the development secret. */
export const DEV_SECRET_FILE = 'dev-jwt-secret';

/** No token, or one that does not verify: UNAUTHENTICATED over HTTP, close 4401 over WebSocket. */
export class AuthenticationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthenticationError';
  }
}

export interface Authenticator {
  /** Verifies `Bearer <token>` (an Authorization header or connectionParams.authorization). */
  authenticate(authorization: unknown): Promise<Principal>;
  /** Signs a token: only with a shared secret (AUTH_JWT_SECRET or the development secret). */
  sign(claims: { sub: string; tenant: string; role: Role }, ttlSeconds: number): Promise<string>;
  canSign: boolean;
  /** Where the development secret is kept when it is in use; null when a key is configured. */
  devSecretFile: string | null;
}

/** The development secret: read from the data directory, or created there (mode 0600). */
export async function loadDevSecret(dataDir: string): Promise<{ secret: string; file: string }> {
  const file = path.resolve(dataDir, DEV_SECRET_FILE);
  try {
    const secret = (await readFile(file, 'utf8')).trim();
    if (secret.length >= 32) return { secret, file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomBytes(32).toString('base64url');
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return { secret, file };
}

function keyAlgorithms(key: KeyObject): string[] {
  if (key.type === 'secret') return ['HS256'];
  if (key.asymmetricKeyType === 'rsa') return ['RS256'];
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return ['ES256'];
  throw new Error('AUTH_JWT_PUBLIC_KEY must be an RSA or EC P-256 public key');
}

/** Parses `TTL` such as 90s, 15m, 1h, 7d (or plain seconds) into seconds. */
export function parseTtl(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!match) throw new Error(`--ttl must look like 90s, 15m, 1h or 7d, got "${text}"`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  const seconds = Number(match[1]) * unit;
  if (seconds < 1 || seconds > 366 * 86400) throw new Error(`--ttl must be from 1s to 366d, got "${text}"`);
  return seconds;
}

/** Message for a jose failure; never echoes the token. */
function reason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `token claim ${err.claim} is invalid (${err.reason})`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  return 'token is malformed or not signed with the configured key';
}

/** How many verified tokens an authenticator remembers (the oldest goes first). */
const MAX_VERIFIED_TOKENS = 10_000;

export async function createAuthenticator(config: AuthConfig, dataDir: string): Promise<Authenticator> {
  let key: KeyObject;
  let devSecretFile: string | null = null;
  if (config.publicKey) {
    key = createPublicKey(config.publicKey);
  } else if (config.secret) {
    key = createSecretKey(Buffer.from(config.secret, 'utf8'));
  } else {
    const dev = await loadDevSecret(dataDir);
    devSecretFile = dev.file;
    key = createSecretKey(Buffer.from(dev.secret, 'utf8'));
  }
  const algorithms = keyAlgorithms(key);
  const verifyOptions = {
    algorithms,
    requiredClaims: ['exp', 'sub'],
    ...(config.issuer ? { issuer: config.issuer } : {}),
    ...(config.audience ? { audience: config.audience } : {}),
  };

  // Tokens verified lately, kept until they expire: a client sends the same token with every request,
  // and verifying it again each time was a fifth of the server's CPU per request (npm run bench).
  const verified = new Map<string, Principal>();

  return {
    canSign: key.type === 'secret',
    devSecretFile,
    async authenticate(authorization) {
      if (authorization === undefined || authorization === null || authorization === '') {
        throw new AuthenticationError('authentication required: send Authorization: Bearer <token>');
      }
      const match = typeof authorization === 'string' ? /^Bearer ([A-Za-z0-9_.~+/=-]{1,8192})$/i.exec(authorization.trim()) : null;
      if (!match) throw new AuthenticationError('the authorization must be "Bearer <token>"');
      const token = match[1]!;
      const known = verified.get(token);
      if (known && known.expiresAt > Date.now()) return known;
      if (known) verified.delete(token); // expired: jwtVerify says so below
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, key, verifyOptions));
      } catch (err) {
        throw new AuthenticationError(reason(err));
      }
      const { sub, tenant, role, exp } = payload;
      if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) throw new AuthenticationError('token claim sub must be a non-empty string');
      if (typeof tenant !== 'string' || !TENANT_PATTERN.test(tenant)) throw new AuthenticationError('token claim tenant must be a tenant id');
      if (!ROLES.includes(role as Role)) throw new AuthenticationError('token claim role must be admin, service or user');
      const principal: Principal = { sub, tenant, role: role as Role, expiresAt: (exp as number) * 1000 };
      if (verified.size >= MAX_VERIFIED_TOKENS) verified.delete(verified.keys().next().value!);
      verified.set(token, principal);
      return principal;
    },
    async sign(claims, ttlSeconds) {
      if (key.type !== 'secret') throw new Error('tokens can only be signed with AUTH_JWT_SECRET or the development secret');
      if (!TENANT_PATTERN.test(claims.tenant)) throw new Error(`tenant must match ${TENANT_PATTERN}, got "${claims.tenant}"`);
      if (!ROLES.includes(claims.role)) throw new Error(`role must be admin, service or user, got "${claims.role}"`);
      let jwt = new SignJWT({ tenant: claims.tenant, role: claims.role })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(claims.sub)
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds);
      if (config.issuer) jwt = jwt.setIssuer(config.issuer);
      if (config.audience) jwt = jwt.setAudience(config.audience);
      return jwt.sign(key);
    },
  };
}
