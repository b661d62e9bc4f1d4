/**
 * Writes schema.graphql from the type-graphql classes, or with --check fails when the committed file
 * differs from what the code produces.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { printGraphQLSchema } from '../src/app/schema.js';

const target = fileURLToPath(new URL('../schema.graphql', import.meta.url));
const sdl = await printGraphQLSchema();

if (process.argv.includes('--check')) {
  const committed = await readFile(target, 'utf8').catch(() => '');
  if (committed !== sdl) {
    process.stderr.write('schema.graphql is stale: run `npm run schema:emit` and commit the result.\n');
    process.exit(1);
  }
  process.stdout.write('schema.graphql is current.\n');
} else {
  await writeFile(target, sdl);
  process.stdout.write(`wrote ${target}\n`);
}
