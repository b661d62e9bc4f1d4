/**
 * The command line every bench takes: `--quick`, `--duration=<ms>`, `--rounds=<n>` (1-9). Exits 2 with
 * the usage on anything else.
 */
export interface BenchArgs {
  argv: string[];
  quick: boolean;
  /** Measured time per row (3000 ms; 1000 with --quick). */
  durationMs: number;
  rounds: number;
}

export function parseBenchArgs(usage: string, fullRounds: number): BenchArgs {
  const argv = process.argv.slice(2);
  for (const arg of argv) {
    if (arg !== '--quick' && !/^--duration=\d+$/.test(arg) && !/^--rounds=[1-9]$/.test(arg)) {
      process.stderr.write(`unknown argument ${arg}\n${usage}\n`);
      process.exit(2);
    }
  }
  const quick = argv.includes('--quick');
  const value = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  return {
    argv,
    quick,
    durationMs: Number(value('duration') ?? (quick ? 1000 : 3000)),
    rounds: Number(value('rounds') ?? (quick ? 1 : fullRounds)),
  };
}
