/**
 * Typed calls to lua/workflows.lua: one method per Redis Function. Inputs are validated before Redis
 * is called (and again in Lua), keys come from src/redis/keys.ts, replies are decoded here.
 */
import { randomUUID } from 'node:crypto';
import { fcall, fcallReadOnly, fcallReadOnlyMany } from '../redis/replies.js';
import type { EngineContext, WorkflowRoute } from '../engine/context.js';
import { EngineError, badInput } from '../engine/errors.js';
import { LIMITS } from '../limits.js';
import {
  asList,
  assertId,
  assertInt,
  assertName,
  assertPageSize,
  decodeCursor,
  decodeOffsetCursor,
  encodeCursor,
  metadataFromPairs,
  metadataPairs,
  MAX_INT32,
  type JsonObject,
} from '../engine/validation.js';

export const ORDER_MACHINE = 'order';
export const { MAX_STATES, MAX_TRANSITIONS } = LIMITS;

export interface TransitionRule {
  from: string;
  to: string[];
}

export interface StateMachine {
  name: string;
  version: number;
  initialState: string;
  states: string[];
  transitions: TransitionRule[];
  terminalStates: string[];
}

export interface DefineStateMachineInput {
  name: string;
  initialState: string;
  states: string[];
  transitions: TransitionRule[];
  terminalStates?: string[] | null;
}

export interface OrderFields {
  userId: string;
  productId: string;
  quantity: number;
  unitPriceCents: number;
  totalCents: number;
}

export interface Workflow {
  id: string;
  machine: string;
  machineVersion: number;
  state: string;
  version: number;
  metadata: JsonObject;
  createdAt: Date;
  updatedAt: Date;
  allowedTransitions: string[];
  kind: 'workflow' | 'order';
  /** Present when kind is 'order'. */
  order?: OrderFields;
}

export interface HistoryEntry {
  from: string | null;
  to: string;
  at: Date;
  version: number;
  metadata: JsonObject;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface StartWorkflowInput {
  id?: string | null;
  machine: string;
  metadata?: JsonObject | null;
}

export interface TransitionWorkflowInput {
  id: string;
  to: string;
  /** Compare-and-set: the state the caller believes the workflow is in. */
  from?: string | null;
  expectedVersion?: number | null;
  metadata?: JsonObject | null;
}

/** The workflow as the Lua functions answer it (lua/include/workflow.lua: workflow_reply). */
export interface WorkflowReply {
  id: string;
  machine: string;
  machineVersion: number;
  state: string;
  version: number;
  createdAt: number;
  updatedAt: number;
  kind: 'workflow' | 'order';
  metadata: unknown;
  allowedTransitions?: unknown;
  order?: OrderFields;
}

export function decodeWorkflow(reply: WorkflowReply): Workflow {
  const wf: Workflow = {
    id: reply.id,
    machine: reply.machine,
    machineVersion: reply.machineVersion,
    state: reply.state,
    version: reply.version,
    metadata: metadataFromPairs(reply.metadata),
    createdAt: new Date(reply.createdAt),
    updatedAt: new Date(reply.updatedAt),
    allowedTransitions: asList<string>(reply.allowedTransitions),
    kind: reply.kind,
  };
  if (reply.order) wf.order = reply.order;
  return wf;
}

export function routeOf(wf: Workflow): WorkflowRoute {
  return {
    machine: wf.machine,
    kind: wf.kind,
    userId: wf.order?.userId ?? '',
    productId: wf.order?.productId ?? '',
  };
}

function decodeMachine(reply: StateMachine): StateMachine {
  return {
    name: reply.name,
    version: reply.version,
    initialState: reply.initialState,
    states: asList<string>(reply.states),
    transitions: asList<TransitionRule>(reply.transitions).map((r) => ({ from: r.from, to: asList<string>(r.to) })),
    terminalStates: asList<string>(reply.terminalStates),
  };
}

export class WorkflowEngine {
  constructor(private readonly ctx: EngineContext) {}

  async defineMachine(tenant: string, input: DefineStateMachineInput): Promise<StateMachine> {
    const name = assertName(input.name, 'name');
    if (name === ORDER_MACHINE) throw badInput('the built-in order machine cannot be redefined');
    if (!Array.isArray(input.states) || input.states.length === 0) throw badInput('states must list at least one state');
    if (input.states.length > MAX_STATES) throw badInput(`a machine has at most ${MAX_STATES} states`);
    input.states.forEach((s) => assertName(s, 'state name'));
    assertName(input.initialState, 'initialState');
    if (!Array.isArray(input.transitions)) throw badInput('transitions must be a list');
    let count = 0;
    for (const rule of input.transitions) {
      assertName(rule.from, 'transition from');
      if (!Array.isArray(rule.to)) throw badInput('transition to must be a list');
      rule.to.forEach((s) => assertName(s, 'transition to'));
      count += rule.to.length;
    }
    if (count > MAX_TRANSITIONS) throw badInput(`a machine has at most ${MAX_TRANSITIONS} transitions`);
    input.terminalStates?.forEach((s) => assertName(s, 'terminal state'));
    const k = this.ctx.keys(tenant);
    const definition = {
      initialState: input.initialState,
      states: input.states,
      transitions: input.transitions.map((r) => ({ from: r.from, to: r.to })),
      terminalStates: input.terminalStates ?? null,
    };
    const reply = await fcall<StateMachine>(this.ctx.redis, 'machine_define', [k.machine(name), k.machineNames()], [
      name,
      JSON.stringify(definition),
    ]);
    return decodeMachine(reply);
  }

  /** Creates the built-in order machine if absent; true when it did. */
  async ensureOrderMachine(tenant: string): Promise<boolean> {
    const k = this.ctx.keys(tenant);
    const reply = await fcall<{ created: boolean }>(
      this.ctx.redis,
      'machine_ensure_order',
      [k.machine(ORDER_MACHINE), k.machineNames()],
      [],
    );
    return reply.created;
  }

  async machine(tenant: string, name: string, version?: number): Promise<StateMachine | null> {
    const k = this.ctx.keys(tenant);
    assertName(name, 'name');
    const v = version === undefined ? '' : assertInt(version, 'version', 1, MAX_INT32);
    const reply = await fcallReadOnly<StateMachine | null>(this.ctx.redis, 'machine_get', [k.machine(name)], [v]);
    return reply ? decodeMachine(reply) : null;
  }

  async machines(tenant: string): Promise<StateMachine[]> {
    const k = this.ctx.keys(tenant);
    const names = asList<string>(await fcallReadOnly<unknown>(this.ctx.redis, 'machine_names', [k.machineNames()], []));
    const replies = await fcallReadOnlyMany<StateMachine | null>(
      this.ctx.redis,
      'machine_get',
      names.map((name) => ({ keys: [k.machine(name)], args: [''] })),
    );
    return replies.filter((r): r is StateMachine => r !== null).map(decodeMachine);
  }

  async start(tenant: string, input: StartWorkflowInput): Promise<Workflow> {
    const id = input.id === undefined || input.id === null ? randomUUID() : assertId(input.id, 'id');
    const machine = assertName(input.machine, 'machine');
    if (machine === ORDER_MACHINE) throw badInput('orders are created by processOrder, not started directly');
    const meta = metadataPairs(input.metadata);
    const k = this.ctx.keys(tenant);
    const reply = await fcall<WorkflowReply>(this.ctx.redis, 'wf_start', k.workflowBlock(id, machine), [
      ...this.ctx.eventArgs(k),
      id,
      machine,
      meta,
    ]);
    const wf = decodeWorkflow(reply);
    this.ctx.rememberRoute(tenant, id, routeOf(wf));
    return wf;
  }

  async transition(tenant: string, input: TransitionWorkflowInput): Promise<Workflow> {
    const id = assertId(input.id, 'id');
    const to = assertName(input.to, 'to');
    const from = input.from === undefined || input.from === null ? '' : assertName(input.from, 'from');
    const expectedVersion =
      input.expectedVersion === undefined || input.expectedVersion === null
        ? ''
        : assertInt(input.expectedVersion, 'expectedVersion', 1, MAX_INT32);
    const meta = metadataPairs(input.metadata);
    const k = this.ctx.keys(tenant);
    return this.ctx.withWorkflowRoute(tenant, id, async (route) => {
      const reply = await fcall<WorkflowReply>(this.ctx.redis, 'wf_transition', this.ctx.workflowBlock(k, id, route), [
        ...this.ctx.eventArgs(k),
        id,
        route.machine,
        route.userId,
        route.productId,
        to,
        from,
        expectedVersion,
        meta,
      ]);
      return decodeWorkflow(reply);
    });
  }

  async get(tenant: string, id: string): Promise<Workflow | null> {
    assertId(id, 'id');
    const k = this.ctx.keys(tenant);
    const route = await this.ctx.route(tenant, id);
    if (!route) return null;
    try {
      const reply = await fcallReadOnly<WorkflowReply | null>(
        this.ctx.redis,
        'wf_get',
        [k.workflow(id), k.machine(route.machine)],
        [route.machine],
      );
      return reply ? decodeWorkflow(reply) : null;
    } catch (err) {
      if (err instanceof EngineError && err.code === 'STALE_KEYS') {
        await this.ctx.route(tenant, id, true);
        return this.get(tenant, id);
      }
      throw err;
    }
  }

  async history(tenant: string, id: string, page: { first?: number; after?: string | null }): Promise<Page<HistoryEntry>> {
    assertId(id, 'id');
    const first = assertPageSize(page.first, 50);
    const offset = decodeOffsetCursor(page.after);
    const k = this.ctx.keys(tenant);
    const reply = await fcallReadOnly<{ entries: RawHistoryEntry[]; next: number | null }>(
      this.ctx.redis,
      'wf_history',
      [k.workflowHistory(id)],
      [offset, first],
    );
    return {
      items: reply.entries.map((e) => ({
        from: e.from,
        to: e.to,
        at: new Date(e.at),
        version: e.version,
        metadata: e.metadata,
      })),
      nextCursor: reply.next === null ? null : encodeCursor(reply.next),
    };
  }

  /** Workflows of one machine or all, optionally in one state, most recently updated first. */
  async list(
    tenant: string,
    filter: { machine?: string | null; state?: string | null; first?: number; after?: string | null },
  ): Promise<Page<Workflow>> {
    const first = assertPageSize(filter.first, 20);
    const machine = filter.machine === undefined || filter.machine === null ? null : assertName(filter.machine, 'machine');
    const state = filter.state === undefined || filter.state === null ? null : assertName(filter.state, 'state');
    const after = decodeCursor(filter.after);
    if (after !== '' && !isListPosition(after, machine, state)) throw badInput('after is not a cursor of this listing');
    const k = this.ctx.keys(tenant);
    const index = machine
      ? state
        ? k.indexMachineByState(machine)
        : k.indexMachine(machine)
      : state
        ? k.indexAllByState()
        : k.indexAll();
    const page = await fcallReadOnly<{ items: unknown; next: string | null }>(this.ctx.redis, 'wf_list', [index], [
      state ?? '',
      first,
      after,
    ]);
    const items = asList<[string, string]>(page.items);
    const replies = await fcallReadOnlyMany<WorkflowReply | null>(
      this.ctx.redis,
      'wf_get',
      items.map(([id, m]) => ({ keys: [k.workflow(id), k.machine(m)], args: [m] })),
    );
    return {
      items: replies.filter((r): r is WorkflowReply => r !== null).map(decodeWorkflow),
      nextCursor: page.next === null ? null : encodeCursor(page.next),
    };
  }
}

/** A wf_list position: '[<state>:]<13-digit inverted time>:<id>:<machine>' (lua/workflows.lua). */
function isListPosition(position: string, machine: string | null, state: string | null): boolean {
  const match = /^(?:([A-Za-z][A-Za-z0-9_-]{0,63}):)?\d{13}:([A-Za-z0-9][A-Za-z0-9_.-]{0,127}):([A-Za-z][A-Za-z0-9_-]{0,63})$/.exec(position);
  if (!match) return false;
  if ((match[1] ?? null) !== state) return false;
  return machine === null || match[3] === machine;
}

interface RawHistoryEntry {
  from: string | null;
  to: string;
  at: number;
  version: number;
  metadata: JsonObject;
}
