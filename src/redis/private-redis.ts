/**
 * One private redis-server per data directory, shared by every atomflow process on that directory
 * (`npm start`, several of them, and `npm run worker`). The files it keeps in DATA_DIR:
 *
 *   atomflow-redis.lock    exists while one process starts, joins or leaves the private Redis
 *                          (created with O_EXCL; holds that process' pid; a lock whose pid is dead
 *                          is stale and removed)
 *   atomflow-redis.json    {pid, start, port, url, startedAt} of the running redis-server, written as soon
 *                          as it is spawned, so that no second one is ever started on the directory
 *   atomflow-redis.users/  one file per process using it, named by its pid, holding {start, url}:
 *                          a server's GraphQL URL (`npm run demo` finds a server there)
 *
 * `start` is the process' start time (Linux /proc/<pid>/stat): a pid that the system has given to
 * another program since is not mistaken for the process recorded. *
 * The first process to need it starts redis-server (in its own session, so a Ctrl-C in the terminal
 * of one server does not stop it under the others) and records it; later processes find the record
 * and connect. A record whose redis-server is gone is stale and replaced. When a process stops it
 * removes its user file and any of dead processes; the last one to leave stops redis-server
 * (SIGTERM: Redis flushes its append-only file) and removes the record. A process killed with
 * SIGKILL cannot leave: its Redis keeps running and is used (and its dead user entry cleaned) by the
 * next process that starts on the directory, so there is never a second one.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { checkRedis, probeRedis, RedisUnavailableError, type ResolvedRedis } from './connect.js';

export const LOCK_FILE = 'atomflow-redis.lock';
export const RECORD_FILE = 'atomflow-redis.json';
export const USERS_DIR = 'atomflow-redis.users';

export interface PrivateRedisRecord {
  pid: number;
  /** Start time of that pid (clock ticks since boot), where the system tells it. */
  start?: string | null;
  port: number;
  url: string;
  startedAt: string;
}

type Log = (line: string) => void;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Whether a process with this pid exists (EPERM: it does, under another user). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** When the process with this pid started (clock ticks since boot; Linux), or null. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "(comm)": state is field 3, starttime field 22
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether `pid` is still the process that started at `start` (when either start is unknown: alive). */
export function sameProcess(pid: number, start: string | null | undefined): boolean {
  if (!pidAlive(pid)) return false;
  if (!start) return true;
  const now = processStart(pid);
  return now === null || now === start;
}

/** This process' entry in the users directory. */
function userEntry(url?: string): string {
  return `${JSON.stringify({ start: processStart(process.pid), ...(url ? { url } : {}) })}\n`;
}

function readUserEntry(file: string): { start?: string | null; url?: unknown } {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { start?: string | null; url?: unknown };
  } catch {
    return {};
  }
}

/** The command line of a live process (Linux /proc), or null where that cannot be read. */
async function commandLine(pid: number): Promise<string | null> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
  } catch {
    return null;
  }
}

/**
 * Runs `fn` holding the directory's lock file. Waits while another live process holds it; removes it
 * when its holder is dead (killed while starting or leaving).
 */
export async function withDataDirLock<T>(dir: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const lockPath = path.join(dir, LOCK_FILE);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
    const age = await stat(lockPath).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    );
    // an empty lock is one being written this instant, unless it is old
    if ((holder > 0 && !pidAlive(holder)) || (!holder && age > 5000)) {
      await unlink(lockPath).catch(() => {});
      continue;
    }
    if (Date.now() > deadline) {
      throw new RedisUnavailableError(`${lockPath} is held by process ${holder || '(unknown)'} for more than ${timeoutMs / 1000} s; if no atomflow process is starting, remove the file`);
    }
    await sleep(50);
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => {});
  }
}

export async function readRecord(dir: string): Promise<PrivateRedisRecord | null> {
  try {
    const record = JSON.parse(await readFile(path.join(dir, RECORD_FILE), 'utf8')) as PrivateRedisRecord;
    return Number.isInteger(record.pid) && typeof record.url === 'string' ? record : null;
  } catch {
    return null;
  }
}

/** Removes the user files of dead processes; returns the pids still alive. */
async function liveUsers(dir: string): Promise<number[]> {
  const usersDir = path.join(dir, USERS_DIR);
  const names = await readdir(usersDir).catch(() => [] as string[]);
  const alive: number[] = [];
  for (const name of names) {
    const pid = Number(name);
    if (sameProcess(pid, readUserEntry(path.join(usersDir, name)).start)) alive.push(pid);
    else await rm(path.join(usersDir, name), { force: true });
  }
  return alive;
}

/** `preferred` when nothing listens there, else any free port. */
async function freePort(preferred = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', (err) => (preferred ? freePort().then(resolve, reject) : reject(err)));
    srv.listen(preferred, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Sends SIGTERM and waits (up to 15 s) until the process is gone. */
async function terminate(pid: number): Promise<void> {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + 15_000;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(25);
}

async function spawnRedis(binary: string, dir: string, log: Log, preferredPort = 0): Promise<PrivateRedisRecord> {
  const port = await freePort(preferredPort);
  const child = spawn(
    binary,
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--daemonize', 'no'],
    // its own session: a Ctrl-C in one server's terminal must not stop it under the others
    { stdio: 'ignore', detached: true },
  );
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.unref();
  const url = `redis://127.0.0.1:${port}`;
  if (child.pid === undefined) {
    const err = await spawnError;
    throw new RedisUnavailableError(`could not start ${binary}: ${err.message}`);
  }
  const record: PrivateRedisRecord = { pid: child.pid, start: processStart(child.pid), port, url, startedAt: new Date().toISOString() };
  // recorded before it answers: a process killed right now leaves a record, never an unknown Redis
  await writeFile(path.join(dir, RECORD_FILE), `${JSON.stringify(record)}\n`);
  const deadline = Date.now() + 10_000;
  let failure: string | null = null;
  for (;;) {
    if (child.exitCode !== null) {
      failure = `${binary} exited with code ${child.exitCode} at start (is ${dir} writable?)`;
      break;
    }
    const major = await probeRedis(url, 500);
    if (major !== null) {
      if (major < 7) failure = `${binary} is Redis ${major}; atomflow needs Redis 7 or newer`;
      break;
    }
    if (Date.now() > deadline) {
      failure = `${binary} did not answer on port ${port} within 10 s`;
      break;
    }
    await sleep(50);
  }
  if (failure) {
    await terminate(child.pid);
    await rm(path.join(dir, RECORD_FILE), { force: true });
    throw new RedisUnavailableError(failure);
  }
  log(`started a private redis-server on ${url} (pid ${child.pid}, append-only file in ${dir})`);
  return record;
}

/**
 * Joins the private Redis of `dataDir`, starting it when none runs (and `binary` is given). Returns
 * null when none runs and none can be started.
 */
export async function joinPrivateRedis(options: { dataDir: string; binary: string | null; log?: Log }): Promise<ResolvedRedis | null> {
  const log = options.log ?? (() => {});
  const dir = path.resolve(options.dataDir);
  // nothing to join and nothing to start it with: leave the directory alone
  if (!options.binary && !(await readRecord(dir))) return null;
  try {
    await mkdir(path.join(dir, USERS_DIR), { recursive: true });
  } catch (err) {
    throw new RedisUnavailableError(`DATA_DIR ${dir} cannot be used for the private Redis: ${(err as Error).message}`);
  }
  const joined = await withDataDirLock(dir, async () => {
    let record = await readRecord(dir);
    let started = false;
    // a redis-server that died is started again on its port: processes still connected to that
    // port reconnect to the new one by themselves
    const previousPort = record?.port ?? 0;
    if (record) {
      if (sameProcess(record.pid, record.start)) {
        try {
          await checkRedis(record.url, 5000);
        } catch (err) {
          if ((await commandLine(record.pid))?.includes('redis-server') !== false) {
            throw new RedisUnavailableError(
              `the private redis-server of ${dir} (pid ${record.pid}) does not answer at ${record.url} (${(err as Error).message}); stop it (kill ${record.pid}) and start again`,
            );
          }
          record = null; // the pid now belongs to another program
        }
      } else {
        record = null;
      }
      if (!record) {
        log(`removing the stale private Redis record in ${dir} (its redis-server is gone)`);
        await rm(path.join(dir, RECORD_FILE), { force: true });
      }
    }
    if (!record) {
      if (!options.binary) return null;
      record = await spawnRedis(options.binary, dir, log, previousPort);
      started = true;
    }
    await writeFile(path.join(dir, USERS_DIR, String(process.pid)), userEntry());
    const others = (await liveUsers(dir)).filter((pid) => pid !== process.pid);
    if (!started) log(`using the private redis-server of ${dir} on ${record.url} (pid ${record.pid}; ${others.length} other process(es) use it)`);
    return { record, started };
  });
  if (!joined) return null;

  let left: Promise<void> | null = null;
  return {
    url: joined.record.url,
    target: joined.record.url,
    source: joined.started ? 'started' : 'shared',
    async announce(graphqlUrl: string) {
      await writeFile(path.join(dir, USERS_DIR, String(process.pid)), userEntry(graphqlUrl));
    },
    stop() {
      left ??= leavePrivateRedis(dir, log);
      return left;
    },
  };
}

/** Leaves the private Redis of `dir`; the last process to leave stops it. */
async function leavePrivateRedis(dir: string, log: Log): Promise<void> {
  await withDataDirLock(dir, async () => {
    await rm(path.join(dir, USERS_DIR, String(process.pid)), { force: true });
    const others = await liveUsers(dir);
    const record = await readRecord(dir);
    if (!record) return;
    if (others.length > 0) {
      log(`private redis-server left running for ${others.length} other process(es) on ${dir}`);
      return;
    }
    // never signal a pid the system has since given to another program
    if (sameProcess(record.pid, record.start)) await terminate(record.pid);
    await rm(path.join(dir, RECORD_FILE), { force: true });
    log(`stopped the private redis-server (pid ${record.pid}) of ${dir}`);
  });
}

/** The GraphQL URLs of the live servers using the private Redis of `dataDir` (for npm run demo). */
export function serversOnDataDir(dataDir: string): { pid: number; url: string }[] {
  const usersDir = path.join(path.resolve(dataDir), USERS_DIR);
  let names: string[];
  try {
    names = readdirSync(usersDir);
  } catch {
    return [];
  }
  const servers: { pid: number; url: string }[] = [];
  for (const name of names) {
    const pid = Number(name);
    const { start, url } = readUserEntry(path.join(usersDir, name));
    // a worker, or a server that has not announced its URL yet, has none
    if (typeof url === 'string' && sameProcess(pid, start)) servers.push({ pid, url });
  }
  return servers.sort((a, b) => a.pid - b.pid);
}
