/**
 * The board: what is in atomflow right now, live. Reads only the public GraphQL API (HTTP for
 * queries and the two order buttons, graphql-ws for events) and reloads what it shows when an event
 * says it changed, and everything after a lost connection comes back.
 */
import './board.css';
import { StrictMode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import type { Client } from 'graphql-ws';
import { ApiError, gql, liveClient, loadConfig, saveToken, savedToken, type ConnectionState, type UiConfig } from '../shared/api.js';
import * as Q from './queries.js';

interface Machine {
  name: string;
  version: number;
  states: string[];
  terminalStates: string[];
}
interface WorkflowRow {
  id: string;
  machine: string;
  state: string;
  version: number;
  updatedAt: string;
}
interface HistoryEntry {
  from: string | null;
  to: string;
  at: string;
  version: number;
  metadata: Record<string, unknown>;
}
interface WorkflowDetail extends WorkflowRow {
  metadata: Record<string, unknown>;
  createdAt: string;
  allowedTransitions: string[];
  history: { entries: HistoryEntry[]; nextCursor: string | null };
}
interface Order {
  id: string;
  userId: string;
  productId: string;
  quantity: number;
  unitPriceCents: number;
  totalCents: number;
  state: string;
  createdAt: string;
  workflow: { updatedAt: string; allowedTransitions: string[] };
}
interface Scheduled {
  id: string;
  workflowId: string;
  to: string;
  runAt: string;
  status: string;
  error: string | null;
  executedAt: string | null;
}
interface Saga {
  id: string;
  status: string;
  stepsCompleted: number;
  failedStep: number | null;
  error: string | null;
}
interface LiveEvent {
  key: string;
  kind: 'workflow' | 'order';
  at: string;
  text: string;
}

const COUNT_PAGES = 10; // counts stop at 1000 ("1000+") to keep the board cheap
const SCHEDULE_STATUSES = ['PENDING', 'DONE', 'FAILED', 'CANCELLED'] as const;

const money = (cents: number) => (cents / 100).toLocaleString(undefined, { style: 'currency', currency: 'USD' });
const time = (iso: string) => new Date(iso).toLocaleTimeString();
const errorText = (err: unknown) => (err instanceof ApiError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err));
/** A query the server's schema does not offer (yet): GraphQL validation names the unknown field. */
const notOffered = (err: unknown) => err instanceof ApiError && err.code === 'GRAPHQL_VALIDATION_FAILED' && /Cannot query field/.test(err.message);

/**
 * The Query fields this server offers, by introspection; null when introspection is off (then a
 * panel just tries its query and reads the validation error).
 */
let queryFields: Promise<Set<string> | null> | null = null;
function offered(config: UiConfig, field: string): Promise<boolean> {
  queryFields ??= gql<{ __type: { fields: { name: string }[] } | null }>(config, Q.QUERY_FIELDS).then(
    (d) => (d.__type ? new Set(d.__type.fields.map((f) => f.name)) : null),
    () => null,
  );
  return queryFields.then((fields) => fields === null || fields.has(field));
}

/** Runs `fn` at most once per `ms`, trailing: bursts of events cause one reload. */
function useThrottled(fn: () => void, ms: number): () => void {
  const latest = useRef(fn);
  latest.current = fn;
  const timer = useRef<number | null>(null);
  return useCallback(() => {
    if (timer.current !== null) return;
    timer.current = window.setTimeout(() => {
      timer.current = null;
      latest.current();
    }, ms);
  }, [ms]);
}

function Board({ config }: { config: UiConfig }) {
  const [connection, setConnection] = useState<{ state: ConnectionState; detail?: string }>({ state: 'connecting' });
  const [reloadTick, setReloadTick] = useState(0);
  const [events, setEvents] = useState<LiveEvent[]>([]);
  const [orders, setOrders] = useState<Order[]>([]);
  const [orderError, setOrderError] = useState<string | null>(null);
  const [machines, setMachines] = useState<Machine[]>([]);
  const [counts, setCounts] = useState<Record<string, Record<string, string>>>({});
  const [selection, setSelection] = useState<{ machine: string | null; state: string | null }>({ machine: null, state: null });
  const [page, setPage] = useState<{ items: WorkflowRow[]; nextCursor: string | null; cursors: (string | null)[] }>({ items: [], nextCursor: null, cursors: [null] });
  const [detail, setDetail] = useState<WorkflowDetail | null>(null);
  const [detailId, setDetailId] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  const upsertOrder = useCallback((order: Order) => {
    setOrders((list) => [order, ...list.filter((o) => o.id !== order.id)].sort((a, b) => b.workflow.updatedAt.localeCompare(a.workflow.updatedAt)).slice(0, 30));
  }, []);

  const loadOrders = useCallback(async () => {
    try {
      const recent = await gql<{ workflows: { items: { id: string }[] } }>(config, Q.RECENT_ORDER_IDS);
      const ids = recent.workflows.items.map((w) => w.id);
      if (ids.length === 0) return setOrders([]);
      const data = await gql<Record<string, Order | null>>(config, Q.ordersByIds(ids));
      setOrders(Object.values(data).filter((o): o is Order => o !== null));
    } catch (err) {
      setProblem(errorText(err));
    }
  }, [config]);

  const loadCounts = useCallback(async () => {
    try {
      const { stateMachines } = await gql<{ stateMachines: Machine[] }>(config, Q.MACHINES);
      setMachines(stateMachines);
      const next: Record<string, Record<string, string>> = {};
      for (const m of stateMachines) {
        next[m.name] = {};
        await Promise.all(
          m.states.map(async (state) => {
            let count = 0;
            let after: string | null = null;
            for (let i = 0; i < COUNT_PAGES; i++) {
              const page: { workflows: { items: unknown[]; nextCursor: string | null } } = await gql(config, Q.COUNT_PAGE, { machine: m.name, state, after });
              count += page.workflows.items.length;
              after = page.workflows.nextCursor;
              if (!after) break;
            }
            next[m.name]![state] = after ? `${count}+` : String(count);
          }),
        );
      }
      setCounts(next);
      setProblem(null);
    } catch (err) {
      setProblem(errorText(err));
    }
  }, [config]);

  const loadPage = useCallback(
    async (cursorIndex: number, cursors: (string | null)[]) => {
      try {
        const data = await gql<{ workflows: { items: WorkflowRow[]; nextCursor: string | null } }>(config, Q.WORKFLOW_PAGE, {
          machine: selection.machine,
          state: selection.state,
          after: cursors[cursorIndex] ?? null,
        });
        setPage({ items: data.workflows.items, nextCursor: data.workflows.nextCursor, cursors: cursors.slice(0, cursorIndex + 1) });
      } catch (err) {
        setProblem(errorText(err));
      }
    },
    [config, selection],
  );

  const loadDetail = useCallback(async () => {
    if (!detailId) return setDetail(null);
    try {
      const data = await gql<{ workflow: WorkflowDetail | null }>(config, Q.WORKFLOW_HISTORY, { id: detailId });
      setDetail(data.workflow);
    } catch (err) {
      setProblem(errorText(err));
    }
  }, [config, detailId]);

  const loadMoreHistory = async () => {
    if (!detail?.history.nextCursor) return;
    try {
      const data = await gql<{ workflow: WorkflowDetail | null }>(config, Q.WORKFLOW_HISTORY, { id: detail.id, after: detail.history.nextCursor });
      if (data.workflow) {
        const more = data.workflow.history;
        setDetail({ ...data.workflow, history: { entries: [...detail.history.entries, ...more.entries], nextCursor: more.nextCursor } });
      }
    } catch (err) {
      setProblem(errorText(err));
    }
  };

  const pageRef = useRef(page);
  pageRef.current = page;
  const reloadCounts = useThrottled(loadCounts, 1000);
  const reloadPage = useThrottled(() => void loadPage(pageRef.current.cursors.length - 1, pageRef.current.cursors), 500);
  const reloadDetail = useThrottled(loadDetail, 300);
  const reloadScheduled = useThrottled(() => setReloadTick((t) => t + 1), 1000);
  const detailIdRef = useRef(detailId);
  detailIdRef.current = detailId;

  // first load, and again after a reconnect (events may have been missed meanwhile)
  useEffect(() => {
    void loadCounts();
    void loadOrders();
  }, [loadCounts, loadOrders, reloadTick]);
  useEffect(() => void loadPage(0, [null]), [loadPage]);
  useEffect(() => void loadDetail(), [loadDetail]);

  const addEvent = useCallback((event: LiveEvent) => setEvents((list) => [event, ...list].slice(0, 50)), []);

  useEffect(() => {
    // a client being disposed (unmount, StrictMode's double mount) still reports its close: ignore it
    let active = true;
    const client: Client = liveClient(
      config,
      (state, detail) => active && setConnection({ state, detail }),
      () => active && setReloadTick((t) => t + 1),
    );
    // Each feed keeps the last eventId it received in its variables: graphql-ws sends the same
    // variables again when it reconnects, so the events missed while disconnected arrive first.
    const workflowVariables = { after: null as string | null };
    const orderVariables = { after: null as string | null };
    const offWorkflows = client.subscribe<{ workflowEvents: { eventId: string; workflowId: string; machine: string; from: string | null; to: string; version: number; at: string } }>(
      { query: Q.WORKFLOW_EVENTS, variables: workflowVariables },
      {
        next: ({ data }) => {
          const e = data?.workflowEvents;
          if (!e) return;
          workflowVariables.after = e.eventId;
          addEvent({ key: `w${e.eventId}`, kind: 'workflow', at: e.at, text: `${e.machine} ${e.workflowId}: ${e.from ?? 'start'} → ${e.to} (v${e.version})` });
          reloadCounts();
          reloadPage();
          reloadScheduled();
          if (e.workflowId === detailIdRef.current) reloadDetail();
        },
        error: () => {},
        complete: () => {},
      },
    );
    const offOrders = client.subscribe<{ orderEvents: { eventId: string; type: string; orderId: string; userId: string; state: string; totalCents: number; at: string } }>(
      { query: Q.ORDER_EVENTS, variables: orderVariables },
      {
        next: ({ data }) => {
          const e = data?.orderEvents;
          if (!e) return;
          orderVariables.after = e.eventId;
          addEvent({ key: `o${e.eventId}`, kind: 'order', at: e.at, text: `${e.type} ${e.orderId} (${e.userId}, ${money(e.totalCents)})` });
          gql<{ order: Order | null }>(config, Q.ORDER, { id: e.orderId }).then(
            ({ order }) => order && upsertOrder(order),
            (err) => setProblem(errorText(err)),
          );
        },
        error: () => {},
        complete: () => {},
      },
    );
    return () => {
      active = false;
      offWorkflows();
      offOrders();
      void client.dispose();
    };
  }, [config, addEvent, upsertOrder, reloadCounts, reloadPage, reloadDetail, reloadScheduled]);

  const move = async (order: Order, to: string) => {
    setOrderError(null);
    try {
      await gql(config, Q.MOVE_ORDER, { id: order.id, to });
      const { order: fresh } = await gql<{ order: Order | null }>(config, Q.ORDER, { id: order.id });
      if (fresh) upsertOrder(fresh);
    } catch (err) {
      setOrderError(`${order.id}: ${errorText(err)}`);
    }
  };

  return (
    <>
      <header className="top">
        <h1>atomflow</h1>
        <nav>
          <a href="/graphql">playground</a> · <a href="/metrics">metrics</a>
        </nav>
        <ConnectionBadge state={connection.state} detail={connection.detail} />
      </header>
      {connection.state === 'disconnected' && (
        <div className="banner" role="alert" data-testid="disconnected">
          Disconnected from the server{connection.detail ? ` (${connection.detail})` : ''}. Reconnecting… What is shown may be out of date.
        </div>
      )}
      {problem && (
        <div className="banner warn" role="status">
          {problem}
        </div>
      )}
      <main className="grid">
        <section className="panel" aria-labelledby="h-workflows">
          <h2 id="h-workflows">Workflows by machine and state</h2>
          {machines.map((m) => (
            <div key={m.name} className="machine">
              <button className={`link ${selection.machine === m.name && !selection.state ? 'active' : ''}`} onClick={() => setSelection({ machine: m.name, state: null })}>
                {m.name} <small>v{m.version}</small>
              </button>
              <div className="states">
                {m.states.map((s) => (
                  <button
                    key={s}
                    className={`chip ${selection.machine === m.name && selection.state === s ? 'active' : ''} ${m.terminalStates.includes(s) ? 'terminal' : ''}`}
                    onClick={() => setSelection({ machine: m.name, state: s })}
                    data-testid={`count-${m.name}-${s}`}
                  >
                    {s} <b>{counts[m.name]?.[s] ?? '…'}</b>
                  </button>
                ))}
              </div>
            </div>
          ))}
          <h3>
            {selection.machine ?? 'all machines'}
            {selection.state ? ` · ${selection.state}` : ''}{' '}
            {(selection.machine || selection.state) && (
              <button className="link small" onClick={() => setSelection({ machine: null, state: null })}>
                show all
              </button>
            )}
          </h3>
          <table className="rows">
            <thead>
              <tr>
                <th>id</th>
                <th>machine</th>
                <th>state</th>
                <th>v</th>
                <th>updated</th>
              </tr>
            </thead>
            <tbody>
              {page.items.map((w) => (
                <tr key={w.id} className={w.id === detailId ? 'active' : ''} onClick={() => setDetailId(w.id)}>
                  <td className="id">{w.id}</td>
                  <td>{w.machine}</td>
                  <td>{w.state}</td>
                  <td>{w.version}</td>
                  <td>{time(w.updatedAt)}</td>
                </tr>
              ))}
              {page.items.length === 0 && (
                <tr>
                  <td colSpan={5} className="empty">
                    no workflows
                  </td>
                </tr>
              )}
            </tbody>
          </table>
          <div className="pager">
            <button disabled={page.cursors.length < 2} onClick={() => void loadPage(page.cursors.length - 2, page.cursors)}>
              ← newer
            </button>
            <span>page {page.cursors.length}</span>
            <button disabled={!page.nextCursor} onClick={() => void loadPage(page.cursors.length, [...page.cursors, page.nextCursor])}>
              older →
            </button>
          </div>
        </section>

        <section className="panel" aria-labelledby="h-history">
          <h2 id="h-history">Workflow history</h2>
          {!detail && <p className="empty">Pick a workflow in the list to see its history.</p>}
          {detail && (
            <>
              <p>
                <b className="id">{detail.id}</b> · {detail.machine} · <b>{detail.state}</b> v{detail.version}
                <br />
                <small>next: {detail.allowedTransitions.join(', ') || 'none (terminal)'}</small>
              </p>
              <ol className="history">
                {detail.history.entries.map((h) => (
                  <li key={h.version}>
                    <span>{time(h.at)}</span> {h.from ?? 'start'} → <b>{h.to}</b> <small>v{h.version}</small>
                    {Object.keys(h.metadata).length > 0 && <code>{JSON.stringify(h.metadata)}</code>}
                  </li>
                ))}
              </ol>
              {detail.history.nextCursor && (
                <button className="link small" onClick={() => void loadMoreHistory()}>
                  later entries →
                </button>
              )}
            </>
          )}
        </section>

        <section className="panel" aria-labelledby="h-orders">
          <h2 id="h-orders">Orders</h2>
          {orderError && (
            <p className="error" role="alert">
              {orderError}
            </p>
          )}
          <ul className="orders" data-testid="orders">
            {orders.map((o) => (
              <li key={o.id} data-order-id={o.id}>
                <div>
                  <b className="id">{o.id}</b> <span className={`state s-${o.state}`} data-testid="order-state">
                    {o.state}
                  </span>
                  <br />
                  <small>
                    {o.userId} · {o.quantity} × {o.productId} · {money(o.totalCents)} · {time(o.createdAt)}
                  </small>
                </div>
                <div className="actions">
                  {o.workflow.allowedTransitions.includes('cancelled') && <button onClick={() => void move(o, 'cancelled')}>Cancel</button>}
                  {o.workflow.allowedTransitions.includes('returned') && <button onClick={() => void move(o, 'returned')}>Return</button>}
                </div>
              </li>
            ))}
            {orders.length === 0 && <li className="empty">no orders yet</li>}
          </ul>
        </section>

        <ScheduledPanel config={config} reloadTick={reloadTick} />
        <SagasPanel config={config} reloadTick={reloadTick} />

        <section className="panel" aria-labelledby="h-events">
          <h2 id="h-events">Last events</h2>
          <ul className="events" data-testid="events">
            {events.map((e) => (
              <li key={e.key} className={e.kind}>
                <span>{time(e.at)}</span> {e.text}
              </li>
            ))}
            {events.length === 0 && <li className="empty">waiting for events…</li>}
          </ul>
        </section>
      </main>
      <TokenBox />
    </>
  );
}

function ConnectionBadge({ state, detail }: { state: ConnectionState; detail?: string }) {
  const label = state === 'connected' ? 'live' : state === 'connecting' ? 'connecting…' : 'disconnected';
  return (
    <span className={`badge ${state}`} data-testid="connection" title={detail}>
      {label}
    </span>
  );
}

/** Scheduled transitions by status, when the server lists them; a look-up by id always. */
function ScheduledPanel({ config, reloadTick }: { config: UiConfig; reloadTick: number }) {
  const [byStatus, setByStatus] = useState<Record<string, Scheduled[]> | 'not offered' | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let cancelled = false;
    (async () => {
      if (!(await offered(config, 'scheduledTransitions'))) return 'not offered' as const;
      const result: Record<string, Scheduled[]> = {};
      for (const status of SCHEDULE_STATUSES) {
        const data = await gql<{ scheduledTransitions: { items: Scheduled[] } }>(config, Q.SCHEDULED_BY_STATUS, { status });
        result[status] = data.scheduledTransitions.items;
      }
      return result;
    })().then(
      (r) => {
        if (cancelled) return;
        setByStatus(r);
        setError(null);
      },
      (err) => {
        if (!cancelled) notOffered(err) ? setByStatus('not offered') : setError(errorText(err));
      },
    );
    return () => {
      cancelled = true;
    };
  }, [config, reloadTick]);
  return (
    <section className="panel" aria-labelledby="h-scheduled">
      <h2 id="h-scheduled">Scheduled transitions</h2>
      {error && <p className="error">{error}</p>}
      {byStatus === 'not offered' && (
        <p className="note">This server's API does not list scheduled transitions yet (no <code>Query.scheduledTransitions</code>); look one up by id.</p>
      )}
      {byStatus &&
        byStatus !== 'not offered' &&
        SCHEDULE_STATUSES.map((status) => (
          <details key={status} open={status !== 'CANCELLED'}>
            <summary>
              {status} <b>{byStatus[status]?.length ?? 0}</b>
            </summary>
            <ul className="plain">
              {(byStatus[status] ?? []).map((s) => (
                <ScheduledRow key={s.id} s={s} />
              ))}
            </ul>
          </details>
        ))}
      <Lookup
        label="scheduled transition id"
        find={async (id) => (await gql<{ scheduledTransition: Scheduled | null }>(config, Q.SCHEDULED_ONE, { id })).scheduledTransition}
        render={(s: Scheduled) => <ScheduledRow s={s} />}
      />
    </section>
  );
}

function ScheduledRow({ s }: { s: Scheduled }) {
  return (
    <li>
      <b className="id">{s.id}</b> {s.workflowId} → {s.to} <span className={`state s-${s.status}`}>{s.status}</span>
      <br />
      <small>
        run at {new Date(s.runAt).toLocaleString()}
        {s.executedAt ? ` · ran ${time(s.executedAt)}` : ''}
        {s.error ? ` · ${s.error}` : ''}
      </small>
    </li>
  );
}

/** Sagas with their outcome, when the server lists them; a look-up by id always. */
function SagasPanel({ config, reloadTick }: { config: UiConfig; reloadTick: number }) {
  const [sagas, setSagas] = useState<Saga[] | 'not offered' | null>(null);
  useEffect(() => {
    offered(config, 'sagas')
      .then((yes): Promise<Saga[] | 'not offered'> => (yes ? gql<{ sagas: { items: Saga[] } }>(config, Q.SAGAS).then((d) => d.sagas.items) : Promise.resolve('not offered')))
      .then(setSagas, (err) => setSagas(notOffered(err) ? 'not offered' : null));
  }, [config, reloadTick]);
  return (
    <section className="panel" aria-labelledby="h-sagas">
      <h2 id="h-sagas">Sagas</h2>
      {sagas === 'not offered' && <p className="note">This server's API does not list sagas (no <code>Query.sagas</code>); look one up by id.</p>}
      {Array.isArray(sagas) && (
        <ul className="plain">
          {sagas.map((s) => (
            <SagaRow key={s.id} s={s} />
          ))}
        </ul>
      )}
      <Lookup label="saga id" find={async (id) => (await gql<{ saga: Saga | null }>(config, Q.SAGA_ONE, { id })).saga} render={(s: Saga) => <SagaRow s={s} />} />
    </section>
  );
}

function SagaRow({ s }: { s: Saga }) {
  return (
    <li>
      <b className="id">{s.id}</b> <span className={`state s-${s.status}`}>{s.status}</span>
      <br />
      <small>
        {s.stepsCompleted} {s.stepsCompleted === 1 ? 'step' : 'steps'} completed
        {s.failedStep ? ` · failed at step ${s.failedStep}: ${s.error}` : ''}
      </small>
    </li>
  );
}

function Lookup<T>({ label, find, render }: { label: string; find: (id: string) => Promise<T | null>; render: (value: T) => React.ReactNode }) {
  const [id, setId] = useState('');
  const [result, setResult] = useState<{ value: T | null; error?: string } | null>(null);
  return (
    <form
      className="lookup"
      onSubmit={(e) => {
        e.preventDefault();
        if (!id.trim()) return;
        find(id.trim()).then(
          (value) => setResult({ value }),
          (err) => setResult({ value: null, error: errorText(err) }),
        );
      }}
    >
      <input aria-label={label} placeholder={label} value={id} onChange={(e) => setId(e.target.value)} />
      <button type="submit">look up</button>
      {result && <ul className="plain">{result.value ? render(result.value) : <li className="empty">{result.error ?? 'not found'}</li>}</ul>}
    </form>
  );
}

/** A token of one's own (with authentication on); kept in this browser only. */
function TokenBox() {
  const [token, setToken] = useState(savedToken() ?? '');
  const saved = useMemo(() => savedToken(), []);
  return (
    <details className="token">
      <summary>access token {saved ? '(your own)' : ''}</summary>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          saveToken(token.trim() || null);
          location.reload();
        }}
      >
        <input aria-label="access token" placeholder="Bearer token (empty: the server's development token)" value={token} onChange={(e) => setToken(e.target.value)} />
        <button type="submit">use</button>
      </form>
    </details>
  );
}

const config = await loadConfig();
createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <Board config={config} />
  </StrictMode>,
);
