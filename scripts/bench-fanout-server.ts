/**
 * The server process for `npm run bench:fanout`: createServer on a free port, run with --expose-gc so
 * the bench can ask (over IPC) for the heap after a full collection. Not for production.
 */
import { readConfig } from '../src/config.js';
import { createServer } from '../src/server.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc || !process.send) {
  console.error('run me from scripts/bench-fanout.ts (node --expose-gc, with an IPC channel)');
  process.exit(2);
}

const server = await createServer(readConfig({ ...process.env, PORT: '0', WORKER_ENABLED: 'false', LOG_LEVEL: 'silent' }));
process.send({ type: 'ready', wsUrl: server.wsUrl, tenant: 'default' });
process.on('message', (message: { type: string }) => {
  if (message.type === 'memory') {
    for (let i = 0; i < 3; i++) gc();
    const { heapUsed, external, arrayBuffers } = process.memoryUsage();
    process.send!({ type: 'memory', heapUsed, external, arrayBuffers, sharing: server.subscriptionSharing.stats() });
  } else if (message.type === 'stop') {
    void server.stop().then(() => process.exit(0));
  }
});
