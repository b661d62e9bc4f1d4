/**
 * The browser side, served by the server itself from what `npm run build:web` put in dist/web (the
 * Vite app in src/web): the board at `/`, the GraphiQL playground at GET /graphql for browsers
 * (Accept: text/html), their bundled assets under /assets/, and /ui-config.json, the little the pages
 * need to know from the server (the GraphQL path, and the development token when the server has one).
 * Nothing is loaded from anywhere else. Only files that the build produced are served.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/web at the repository root; the same from src/ (tsx) and from dist/ (compiled). */
export const WEB_DIST_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'web');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.ttf': 'font/ttf',
  '.map': 'application/json; charset=utf-8',
};

export interface WebUiOptions {
  graphqlPath: string;
  /** Serve the playground at GET graphqlPath to browsers (config.playground). */
  playground: boolean;
  /**
   * The development token the pages put in their Authorization header (the playground's headers
   * editor, the board's requests), or null. Read on every /ui-config.json request, and only sent
   * while the playground is on (never in production unless GRAPHQL_PLAYGROUND=true).
   */
  devToken: () => string | null;
  dir?: string;
}

export interface WebUi {
  /** Answers the request when it is for the UI and returns true; false leaves it to the caller. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
}

function listFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  if (!existsSync(dir)) return files;
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const full = path.join(at, name);
      if (statSync(full).isDirectory()) walk(full);
      else files.set('/' + path.relative(dir, full).split(path.sep).join('/'), full);
    }
  };
  walk(dir);
  return files;
}

function notBuilt(res: ServerResponse): void {
  res.statusCode = 503;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(
    '<!doctype html><meta charset="utf-8"><title>atomflow</title><p>The web pages are not built yet: run ' +
      '<code>npm run build:web</code> (npm start and npm test do it by themselves when dist/web is missing).</p>',
  );
}

export function createWebUi(options: WebUiOptions): WebUi {
  const dir = options.dir ?? WEB_DIST_DIR;
  let files = listFiles(dir);

  function send(req: IncomingMessage, res: ServerResponse, urlPath: string): void {
    if (!files.has(urlPath)) files = listFiles(dir); // built after the server started
    const file = files.get(urlPath);
    if (!file) {
      if (urlPath.endsWith('.html')) return notBuilt(res);
      res.statusCode = 404;
      res.end();
      return;
    }
    res.statusCode = 200;
    res.setHeader('content-type', TYPES[path.extname(file)] ?? 'application/octet-stream');
    // asset names carry a content hash; pages must be re-read to pick up a new build
    res.setHeader('cache-control', urlPath.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
    res.setHeader('x-content-type-options', 'nosniff');
    res.end(req.method === 'HEAD' ? undefined : readFileSync(file));
  }

  return {
    handle(req, res, url) {
      const method = req.method ?? 'GET';
      if (method !== 'GET' && method !== 'HEAD') return false;
      if (url.pathname === options.graphqlPath) {
        // a browser navigating here (not a GraphQL GET request, which carries ?query=)
        const wantsHtml = (req.headers.accept ?? '').includes('text/html') && !url.searchParams.has('query');
        if (!options.playground || !wantsHtml) return false;
        send(req, res, '/playground.html');
        return true;
      }
      if (url.pathname === '/' || url.pathname === '/index.html') {
        send(req, res, '/index.html');
        return true;
      }
      if (url.pathname === '/ui-config.json') {
        res.statusCode = 200;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.setHeader('cache-control', 'no-store');
        res.end(JSON.stringify({ graphqlPath: options.graphqlPath, playground: options.playground, devToken: options.playground ? options.devToken() : null }));
        return true;
      }
      if (url.pathname.startsWith('/assets/') || url.pathname === '/favicon.svg') {
        send(req, res, url.pathname);
        return true;
      }
      return false;
    },
  };
}
