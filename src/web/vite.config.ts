/**
 * The web pages (board at /, playground at GET /graphql) as one Vite app, built into dist/web and
 * served by the server (src/webui.ts). Everything is bundled: nothing loads from a CDN.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  root: here('.'),
  base: '/',
  publicDir: here('public'),
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    outDir: here('../../dist/web'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      input: { index: here('index.html'), playground: here('playground.html') },
      // framer-motion (GraphiQL's dependency) marks modules "use client", which means nothing here
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
    },
  },
  // npm run dev:web: the pages with hot reload, the API from a server on :4000
  server: {
    proxy: {
      '/graphql': { target: 'http://127.0.0.1:4000', ws: true },
      '/ui-config.json': 'http://127.0.0.1:4000',
    },
  },
});
