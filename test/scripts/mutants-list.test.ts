/** scripts/mutants.txt stays applicable: at least 25 mutants, each finding its text exactly once. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMutants } from '../../scripts/mutants.js';

describe('the mutant list', () => {
  it('has at least 25 Lua and TypeScript mutants, each applying to exactly one place', () => {
    const mutants = parseMutants(readFileSync('scripts/mutants.txt', 'utf8'));
    expect(mutants.length).toBeGreaterThanOrEqual(25);
    expect(mutants.some((m) => m.file.endsWith('.lua'))).toBe(true);
    expect(mutants.some((m) => m.file.endsWith('.ts'))).toBe(true);
    for (const m of mutants) {
      const text = readFileSync(m.file, 'utf8');
      expect(text.split(m.find).length - 1, `${m.file}: ${m.find}`).toBe(1);
      expect(m.replace).not.toBe(m.find);
    }
  });

  it('parses an empty replacement as a deletion and an optional list of test files', () => {
    expect(parseMutants('# c\n\na.lua | x = 1 |\nb.ts | y | z | test/a.test.ts test/b.test.ts\n')).toEqual([
      { index: 1, line: 3, file: 'a.lua', find: 'x = 1', replace: '', tests: ['test/lua'] },
      { index: 2, line: 4, file: 'b.ts', find: 'y', replace: 'z', tests: ['test/a.test.ts', 'test/b.test.ts'] },
    ]);
    expect(() => parseMutants('only | two')).toThrow(/mutants.txt:1/);
  });
});
