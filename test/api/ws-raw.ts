/**
 * A bare graphql-transport-ws client for tests that look at the protocol itself: the handshake's
 * HTTP status, connection_init with or without a token, close codes, and single operations (queries
 * and mutations run over WebSocket too).
 */
import WebSocket from 'ws';

export interface OperationResult {
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: { code?: string; [k: string]: unknown } }[];
}

export interface Handshake {
  socket: RawSocket | null;
  /** The HTTP status when the upgrade was refused. */
  httpStatus?: number;
  /** The close code when the server closed instead of acknowledging connection_init. */
  closeCode?: number;
  closeReason?: string;
}

export class RawSocket {
  private nextId = 1;
  private listeners = new Set<(message: any) => void>();
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (raw) => {
      const message = JSON.parse(String(raw));
      this.listeners.forEach((l) => l(message));
    });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  /**
   * Opens a socket and sends connection_init with `authorization` (omitted when undefined); resolves
   * once acknowledged, or with the refusal (HTTP status or close code).
   */
  static open(url: string, options: { authorization?: string; origin?: string; payload?: unknown } = {}): Promise<Handshake> {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, 'graphql-transport-ws', options.origin ? { headers: { origin: options.origin } } : {});
      const socket = new RawSocket(ws);
      let settled = false;
      const settle = (h: Handshake) => {
        if (!settled) resolve(h);
        settled = true;
      };
      ws.on('unexpected-response', (_req, res) => {
        settle({ socket: null, httpStatus: res.statusCode });
        res.resume();
        ws.terminate();
      });
      ws.on('error', () => settle({ socket: null }));
      ws.on('open', () => {
        const payload = options.payload ?? (options.authorization === undefined ? {} : { authorization: options.authorization });
        ws.send(JSON.stringify({ type: 'connection_init', payload }));
      });
      socket.listen((m) => {
        if (m.type === 'connection_ack') settle({ socket });
      });
      void socket.closed.then(({ code, reason }) => settle({ socket: null, closeCode: code, closeReason: reason }));
    });
  }

  private listen(listener: (message: any) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs one query or mutation: its result or errors (or the close, if the socket closes first). */
  run(query: string, variables?: Record<string, unknown>): Promise<OperationResult & { closeCode?: number }> {
    const id = String(this.nextId++);
    return new Promise((resolve) => {
      let result: OperationResult = {};
      const stop = this.listen((m) => {
        if (m.id !== id) return;
        if (m.type === 'next') result = m.payload;
        if (m.type === 'error') {
          stop();
          resolve({ errors: m.payload });
        }
        if (m.type === 'complete') {
          stop();
          resolve(result);
        }
      });
      void this.closed.then(({ code }) => resolve({ closeCode: code }));
      this.ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
    });
  }

  /** Starts a subscription and collects what it receives. */
  subscribe(query: string, variables?: Record<string, unknown>): { id: string; events: any[]; errors: any[]; done: Promise<void> } {
    const id = String(this.nextId++);
    const events: any[] = [];
    const errors: any[] = [];
    const done = new Promise<void>((resolve) => {
      const stop = this.listen((m) => {
        if (m.id !== id) return;
        if (m.type === 'next') (m.payload.errors ? errors : events).push(m.payload.errors ?? m.payload.data);
        if (m.type === 'error') errors.push(m.payload);
        if (m.type === 'error' || m.type === 'complete') {
          stop();
          resolve();
        }
      });
      void this.closed.then(() => resolve());
    });
    this.ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
    return { id, events, errors, done };
  }

  complete(id: string): void {
    this.ws.send(JSON.stringify({ id, type: 'complete' }));
  }

  close(): void {
    this.ws.close();
  }
}
