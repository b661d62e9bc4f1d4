/**
 * Builds the web pages (src/web -> dist/web, `npm run build:web`) when dist/web is missing or older
 * than a file of src/web, so that `npm start` after `npm install`, and `npm test` after `npm ci`,
 * serve the current pages without a separate build step. Run by `prestart` and by the vitest global
 * setup; does nothing when the build is current.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src', 'web');
const built = path.join(root, 'dist', 'web', 'index.html');

function newest(dir: string): number {
  let latest = 0;
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    const stat = statSync(full);
    latest = Math.max(latest, stat.isDirectory() ? newest(full) : stat.mtimeMs);
  }
  return latest;
}

/** Returns why it built ('missing' / 'stale'), or null when the build was current. */
export function ensureWebBuilt(): 'missing' | 'stale' | null {
  const reason = !existsSync(built) || !existsSync(path.join(root, 'dist', 'web', 'playground.html')) ? 'missing' : newest(source) > statSync(built).mtimeMs ? 'stale' : null;
  if (!reason) return null;
  process.stderr.write(`web pages ${reason === 'missing' ? 'not built yet' : 'older than src/web'}: building them (npm run build:web)\n`);
  const vite = path.join(root, 'node_modules', 'vite', 'bin', 'vite.js');
  // NODE_ENV=production: under vitest NODE_ENV is `test`, which would give React's development build
  const result = spawnSync(process.execPath, [vite, 'build', '--config', path.join(source, 'vite.config.ts')], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, NODE_ENV: 'production' },
  });
  if (result.status !== 0) throw new Error(`building the web pages failed (exit ${result.status}); run npm run build:web to see why`);
  return reason;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    ensureWebBuilt();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
}
