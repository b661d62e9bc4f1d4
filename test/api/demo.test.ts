/**
 * `npm run demo` (scripts/demo.ts) as a user runs it: a child process against a running server with
 * the scheduler worker on. It must walk through every scenario and exit 0, print the key results and
 * live events, leave in Redis what it printed, run again against the same server, and exit 1 with a
 * clear message when no server answers.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../setup/private-redis.js';
import { startTestServer, type TestServer } from './harness.js';

const DEMO = path.resolve('scripts/demo.ts');

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ config: { worker: { enabled: true, tickMs: 50 } as any } });
});
afterAll(() => t.close());

interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function runDemo(url: string, timeoutMs = 40_000): Promise<DemoRun> {
  const token = await t.token({ role: 'admin', sub: 'demo' });
  const child = spawn(process.execPath, ['--import', 'tsx', DEMO], {
    env: { ATOMFLOW_URL: url, ATOMFLOW_TOKEN: token, PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the demo did not exit within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The per-run suffix the demo prints in its first line: every id it creates ends with it. */
function runSuffix(stdout: string): string {
  const match = /\(run ([0-9a-z]+)\)/.exec(stdout);
  if (!match) throw new Error(`the demo printed no run suffix:\n${stdout}`);
  return match[1]!;
}

describe('npm run demo', () => {
  it('walks through every scenario against a running server, printing results and live events, and exits 0', { timeout: 60_000 }, async () => {
    const run = await runDemo(t.server.url);
    expect(run.stderr, run.stdout).toBe('');
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    const out = run.stdout;
    const r = runSuffix(out);

    // the key results of each scenario
    expect(out).toContain(`restockProduct(widget-${r}, 5)`);
    expect(out).toMatch(new RegExp(`processOrder\\(order-1-${r}: .*-> pending, total 3000 cents`));
    expect(out).toMatch(/-> OUT_OF_STOCK: \S.*/);
    expect(out).toMatch(/-> INSUFFICIENT_FUNDS: \S.*/);
    expect(out).toMatch(new RegExp(`transitionWorkflow\\(order-1-${r} -> processing\\) -> INVALID_TRANSITION: \\S`));
    expect(out).toMatch(/balance 7000 cents \(\$70\.00\) -> 10000 cents \(\$100\.00\), stock 3 -> 5/);
    expect(out).toMatch(new RegExp(`defineStateMachine\\(ticket-${r}\\) -> version 1`));
    expect(out).toMatch(/v2: open -> in_progress \{"assignee":"kim"\}/);
    expect(out).toMatch(/-> COMPLETED, 3 steps/);
    expect(out).toMatch(/-> ROLLED_BACK at step 3/);
    expect(out).toMatch(/scheduledTransition\(\S+\) -> DONE at \d{4}-\d\d-\d\dT/);
    expect(out).toContain(`workflow(ticket-1-${r}) -> resolved`);

    // the live events, as the subscriptions received them
    for (const type of ['ORDER_CONFIRMED', 'ORDER_PROCESSING', 'ORDER_SHIPPED', 'ORDER_DELIVERED', 'ORDER_RETURNED']) {
      expect(out).toContain(`⚡ ${type} order order-1-${r}`);
    }
    expect(out).toContain(`⚡ workflow ticket-1-${r}: (start) -> open (v1)`);
    expect(out).toContain(`⚡ workflow ticket-1-${r}: in_progress -> resolved (v3)`);
    // events are printed where they arrive: the order's confirmation before the rejected orders
    expect(out.indexOf(`⚡ ORDER_CONFIRMED order order-1-${r}`)).toBeLessThan(out.indexOf('OUT_OF_STOCK'));
    expect(out).toMatch(/Done: every step as expected/);

    // what it printed is what is in Redis, as a client reads it afterwards
    const after = await t.gql(
      `query($o: ID!, $o2: ID!, $p: ID!, $a: ID!, $w: ID!, $h: String!, $s: String!, $saga: ID!) {
        order(id: $o) { state totalCents } rejected: order(id: $o2) { id }
        product(id: $p) { stock } account(id: $a) { balanceCents }
        workflow(id: $w) { state version }
        dataHash(key: $h) { fields } dataSet(key: $s) { members } saga(id: $saga) { status failedStep }
      }`,
      { o: `order-1-${r}`, o2: `order-2-${r}`, p: `widget-${r}`, a: `alice-${r}`, w: `ticket-1-${r}`, h: `warehouse-${r}`, s: `suppliers-${r}`, saga: `saga-2-${r}` },
    );
    expect(after.errors).toBeUndefined();
    expect(after.data).toEqual({
      order: { state: 'returned', totalCents: 3000 },
      rejected: null,
      product: { stock: 5 },
      account: { balanceCents: 10000 },
      workflow: { state: 'resolved', version: 3 },
      dataHash: { fields: { bolts: '60' } },
      dataSet: { members: ['acme'] },
      saga: { status: 'ROLLED_BACK', failedStep: 3 },
    });
  });

  it('runs again against the same server (every id of a run is its own)', { timeout: 60_000 }, async () => {
    const run = await runDemo(t.server.url);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/scheduledTransition\(\S+\) -> DONE/);
    const machines = await t.gql<{ stateMachines: { name: string }[] }>(`{ stateMachines { name } }`);
    // two runs, two ticket machines of their own (plus the order machine and the warm-up machines)
    expect(machines.data!.stateMachines.filter((m) => /^ticket-[0-9a-z]+$/.test(m.name))).toHaveLength(2);
  });

  it('exits 1 with "is the server running" when nothing listens at ATOMFLOW_URL', async () => {
    const port = await freePort();
    const run = await runDemo(`http://127.0.0.1:${port}/graphql`);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+\/graphql .*is the server running\? start it with npm start/);
    expect(run.stdout).not.toMatch(/Done/);
  });
});
