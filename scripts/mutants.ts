/**
 * npm run mutants: applies each mutation of scripts/mutants.txt, one at a time, runs the tests that
 * should notice it, restores the file, and prints which mutants survived and the score.
 *
 *   npm run mutants                 every mutant
 *   npm run mutants -- 3 7          only mutants 3 and 7 (1-based, in list order)
 *
 * The file under mutation is always restored: in a finally block, on SIGINT/SIGTERM/SIGHUP, on an
 * uncaught error, and on exit; and since not even that survives a kill -9, the original is also kept
 * in scripts/.mutant-restore.json until it is put back, and the next run restores it first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LIST = path.join(ROOT, 'scripts', 'mutants.txt');
const JOURNAL = path.join(ROOT, 'scripts', '.mutant-restore.json');
const DEFAULT_TESTS = ['test/lua'];

export interface Mutant {
  index: number;
  line: number;
  file: string;
  find: string;
  replace: string;
  tests: string[];
}

/** Parses the list: `file | find | replace [| tests]`, '#' comments and blank lines skipped. */
export function parseMutants(text: string): Mutant[] {
  const mutants: Mutant[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const parts = `${raw.trimEnd()} `.split(' | ');
    if (parts.length < 3 || parts.length > 4) throw new Error(`scripts/mutants.txt:${i + 1}: expected "file | find | replace [| tests]"`);
    const [file, find, replace, tests] = parts.map((p) => p.trim()) as [string, string, string, string | undefined];
    if (!file || !find) throw new Error(`scripts/mutants.txt:${i + 1}: file and find must not be empty`);
    mutants.push({ index: mutants.length + 1, line: i + 1, file, find, replace, tests: tests ? tests.split(/\s+/) : DEFAULT_TESTS });
  });
  return mutants;
}

let pending: { file: string; original: string } | null = null;
let child: ChildProcess | null = null;

/** Puts the mutated file back (idempotent, synchronous: safe in exit and signal handlers). */
function restore(): void {
  if (pending) {
    writeFileSync(pending.file, pending.original);
    pending = null;
  }
  rmSync(JOURNAL, { force: true });
}

function restoreFromJournal(): void {
  if (!existsSync(JOURNAL)) return;
  const saved = JSON.parse(readFileSync(JOURNAL, 'utf8')) as { file: string; original: string };
  writeFileSync(saved.file, saved.original);
  rmSync(JOURNAL, { force: true });
  console.log(`restored ${path.relative(ROOT, saved.file)} left mutated by an interrupted run`);
}

function mutate(file: string, original: string, mutated: string): void {
  writeFileSync(JOURNAL, JSON.stringify({ file, original }));
  pending = { file, original };
  writeFileSync(file, mutated);
}

function runTests(tests: string[]): Promise<boolean> {
  return new Promise((resolve, reject) => {
    child = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--bail=1', ...tests], {
      cwd: ROOT,
      stdio: 'ignore',
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      child = null;
      resolve(code === 0);
    });
  });
}

function onSignal(signal: NodeJS.Signals): void {
  child?.kill('SIGTERM');
  restore();
  console.error(`\ninterrupted (${signal}); files restored`);
  process.exit(130);
}

async function main(): Promise<number> {
  process.on('exit', restore);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  process.on('uncaughtException', (err) => {
    restore();
    console.error(err);
    process.exit(1);
  });
  restoreFromJournal();

  const all = parseMutants(readFileSync(LIST, 'utf8'));
  const only = process.argv.slice(2).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const mutants = only.length ? all.filter((m) => only.includes(m.index)) : all;
  const survivors: Mutant[] = [];
  const stale: Mutant[] = [];
  let killed = 0;
  const started = Date.now();
  for (const m of mutants) {
    const file = path.join(ROOT, m.file);
    const original = readFileSync(file, 'utf8');
    const count = original.split(m.find).length - 1;
    const label = `#${m.index} ${m.file}: ${m.find.length > 70 ? `${m.find.slice(0, 67)}...` : m.find}`;
    if (count !== 1) {
      stale.push(m);
      console.log(`STALE    ${label} (found ${count} times, scripts/mutants.txt:${m.line})`);
      continue;
    }
    mutate(file, original, original.replace(m.find, () => m.replace));
    let passed: boolean;
    try {
      passed = await runTests(m.tests);
    } finally {
      restore();
    }
    if (passed) survivors.push(m);
    else killed++;
    console.log(`${passed ? 'SURVIVED' : 'killed  '} ${label}`);
  }
  const tested = killed + survivors.length;
  console.log(`\nmutation score: ${killed}/${tested} killed (${tested ? Math.round((killed / tested) * 100) : 0}%), ${survivors.length} survived, ${stale.length} stale, in ${Math.round((Date.now() - started) / 1000)} s`);
  for (const m of survivors) console.log(`  survived #${m.index} (scripts/mutants.txt:${m.line}) ${m.file}: ${m.find} -> ${m.replace || '(deleted)'}`);
  return survivors.length === 0 && stale.length === 0 ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      restore();
      console.error(err);
      process.exit(1);
    },
  );
}
