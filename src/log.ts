/** One-line logs on stdout, with a timestamp; LOG_LEVEL=silent turns them off (tests). */
export type Log = (line: string) => void;

export function createLog(level: 'silent' | 'info'): Log {
  if (level === 'silent') return () => {};
  return (line) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}
