/**
 * Running atomflow's entry points as child processes (npm start, npm run worker) and watching what
 * they leave behind: the redis-server processes working in a data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const MAIN = path.resolve('src/main.ts');
export const WORKER = path.resolve('src/worker/main.ts');

export interface Spawned {
  child: ChildProcess;
  output(): string;
  stderr(): string;
}

/** Runs an entry point with exactly `env` (plus PATH and HOME), collecting its output. */
export function spawnEntry(entry: string, env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => {
    output += d;
    stderr += d;
  });
  return { child, output: () => output, stderr: () => stderr };
}

/** Resolves once the output matches `pattern` (rejects if the process exits first or on timeout). */
/**
 * spawnEntry, with a cleanup pushed on `cleanups` that SIGKILLs the process if it is still running
 * (a test that failed half-way must not leave it behind).
 */
export function spawnTracked(entry: string, env: Record<string, string>, cleanups: (() => Promise<void> | void)[]): Spawned {
  const spawned = spawnEntry(entry, env);
  cleanups.push(() => {
    if (spawned.child.exitCode === null && spawned.child.signalCode === null) spawned.child.kill('SIGKILL');
  });
  return spawned;
}

export function waitForOutput(spawned: Spawned, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(spawned.output());
      if (match) {
        done();
        resolve(match);
      }
    };
    const onExit = (code: number | null) => {
      done();
      reject(new Error(`process exited with ${code} before printing ${pattern}:\n${spawned.output()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${spawned.output()}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      spawned.child.stdout!.off('data', check);
      spawned.child.stderr!.off('data', check);
      spawned.child.off('exit', onExit);
    };
    spawned.child.stdout!.on('data', check);
    spawned.child.stderr!.on('data', check);
    spawned.child.once('exit', onExit);
    check();
  });
}

/** Starts `npm start`'s entry point and resolves with its GraphQL endpoint once it prints it. */
export async function startMain(env: Record<string, string>): Promise<Spawned & { url: string }> {
  const spawned = spawnEntry(MAIN, env);
  const match = await waitForOutput(spawned, /GraphQL endpoint: ([^\s"]+)/);
  return { ...spawned, url: match[1]! };
}

export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * The pids of the redis-server processes whose working directory is `dir` (redis-server chdirs to
 * its --dir, and rewrites its command line, so this is how to tell which directory one serves).
 */
export function redisServersIn(dir: string): number[] {
  const wanted = realpathSync(dir);
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'redis-server') continue;
      if (readlinkSync(`/proc/${entry}/cwd`) === wanted) pids.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

/** A pid that no process has any more (a child that ran and exited). */
export async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await exitOf(child);
  return child.pid!;
}
