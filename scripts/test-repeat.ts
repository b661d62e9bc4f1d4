/**
 * npm run test:repeat -- N [--hog[=K]] [--bail] [vitest filters...]
 *
 * Runs the whole vitest suite N times in a row (each run a fresh vitest process with its own private
 * redis-server) and prints every test that failed with how often it failed. `--hog` runs K busy-loop
 * processes beside the suite (default: one per core), the load under which a timing bug shows itself.
 * Any further arguments are passed to vitest (a file, `-t name`), to repeat just that part.
 * Exit code 0 only when every run passed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

interface JsonReport {
  numPassedTests: number;
  numFailedTests: number;
  testResults: { name: string; status: string; message?: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[];
}

function parseArgs(argv: string[]) {
  let runs = 20;
  let hogs = 0;
  let bail = false;
  const passThrough: string[] = [];
  for (const arg of argv) {
    if (/^\d+$/.test(arg)) runs = Number(arg);
    else if (arg === '--hog') hogs = availableParallelism();
    else if (arg.startsWith('--hog=')) hogs = Number(arg.slice('--hog='.length));
    else if (arg === '--bail') bail = true;
    else passThrough.push(arg);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`the run count must be a positive integer, got ${runs}`);
  if (!Number.isInteger(hogs) || hogs < 0) throw new Error(`--hog takes a number of processes, got ${hogs}`);
  return { runs, hogs, bail, passThrough };
}

/** A process that keeps one core busy until it is killed. */
function startHog(): ChildProcess {
  return spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
}

function runSuite(passThrough: string[], reportFile: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('npx', ['vitest', 'run', '--reporter=dot', '--reporter=json', `--outputFile.json=${reportFile}`, ...passThrough], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: process.env,
    });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<void> {
  const { runs, hogs, bail, passThrough } = parseArgs(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'atomflow-repeat-'));
  const hogProcesses = Array.from({ length: hogs }, startHog);
  const stopHogs = () => hogProcesses.forEach((h) => h.kill('SIGKILL'));
  process.on('exit', stopHogs);
  process.on('SIGINT', () => process.exit(130));
  console.log(`running the suite ${runs} times${hogs ? ` with ${hogs} CPU hog process(es) beside it` : ''}${passThrough.length ? ` (vitest ${passThrough.join(' ')})` : ''}`);

  const failures = new Map<string, { count: number; lastMessage: string }>();
  let failedRuns = 0;
  try {
    for (let i = 1; i <= runs; i++) {
      const reportFile = join(dir, `run-${i}.json`);
      const started = Date.now();
      const exitCode = await runSuite(passThrough, reportFile);
      let report: JsonReport | null = null;
      try {
        report = JSON.parse(readFileSync(reportFile, 'utf8')) as JsonReport;
      } catch {
        report = null;
      }
      const failedHere: string[] = [];
      if (!report) failedHere.push(`(vitest exited ${exitCode} without a report)`);
      else {
        for (const file of report.testResults) {
          if (file.status === 'failed' && file.assertionResults.length === 0) failedHere.push(`${file.name}: ${file.message ?? 'failed to load'}`);
          for (const test of file.assertionResults) {
            if (test.status === 'failed') failedHere.push(`${file.name.replace(`${process.cwd()}/`, '')} > ${test.fullName}\u0000${test.failureMessages[0] ?? ''}`);
          }
        }
      }
      for (const entry of failedHere) {
        const [name = entry, message = ''] = entry.split('\u0000');
        const seen = failures.get(name) ?? { count: 0, lastMessage: '' };
        failures.set(name, { count: seen.count + 1, lastMessage: message.split('\n')[0] ?? '' });
      }
      if (failedHere.length > 0 || exitCode !== 0) failedRuns++;
      const seconds = ((Date.now() - started) / 1000).toFixed(0);
      const counts = report ? `${report.numPassedTests} passed, ${report.numFailedTests} failed` : 'no report';
      console.log(`run ${i}/${runs}: ${counts} (${seconds} s)${failedHere.length ? ' FAILED' : ''}`);
      if (bail && failedRuns > 0) break;
    }
  } finally {
    stopHogs();
    rmSync(dir, { recursive: true, force: true });
  }

  if (failures.size === 0) console.log(`\n0 failures in ${runs} runs`);
  else {
    console.log('\nfailing tests (times failed):');
    for (const [name, { count, lastMessage }] of [...failures].sort((a, b) => b[1].count - a[1].count)) {
      console.log(`  ${count}x ${name}\n       ${lastMessage}`);
    }
    console.log(`\n${failedRuns} of the runs failed`);
  }
  process.exitCode = failedRuns === 0 ? 0 : 1;
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(2);
});
