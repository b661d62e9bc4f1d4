/** The engine settings of src/config.ts: idempotency, retention and worker attempts. */
import { describe, expect, it } from 'vitest';
import { ConfigError, engineOptions, readConfig } from '../../src/config.js';

describe('engine settings', () => {
  it('defaults: requestIds kept 24 h, settled records 7 d, terminal workflows kept, 5 attempts', () => {
    const config = readConfig({});
    expect(engineOptions(config)).toEqual({
      streamMaxLen: 100_000,
      idempotencyTtlMs: 86_400_000,
      retentionSettledMs: 7 * 86_400_000,
      retentionTerminalMs: 0,
    });
    expect(config.worker.maxAttempts).toBe(5);
  });

  it('reads durations with units, bare numbers as ms, and off for RETENTION_TERMINAL', () => {
    const config = readConfig({ IDEMPOTENCY_TTL: '90s', RETENTION_SETTLED: '2h', RETENTION_TERMINAL: '30d', WORKER_MAX_ATTEMPTS: '3' });
    expect(config.idempotencyTtlMs).toBe(90_000);
    expect(config.retentionSettledMs).toBe(7_200_000);
    expect(config.retentionTerminalMs).toBe(30 * 86_400_000);
    expect(config.worker.maxAttempts).toBe(3);
    expect(readConfig({ IDEMPOTENCY_TTL: '1500' }).idempotencyTtlMs).toBe(1500);
    expect(readConfig({ RETENTION_TERMINAL: 'off' }).retentionTerminalMs).toBe(0);
  });

  it.each([
    ['IDEMPOTENCY_TTL', 'off'],
    ['IDEMPOTENCY_TTL', '0'],
    ['IDEMPOTENCY_TTL', '-1s'],
    ['RETENTION_SETTLED', '7 days'],
    ['RETENTION_SETTLED', '1.5h'],
    ['RETENTION_TERMINAL', '11000d'],
    ['WORKER_MAX_ATTEMPTS', '0'],
  ])('stops on %s=%s, naming the variable', (name, value) => {
    expect(() => readConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => readConfig({ [name]: value })).toThrow(name);
  });
});
