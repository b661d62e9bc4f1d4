/**
 * Typed calls to lua/sagas.lua: one method per Redis Function. A saga is a list of steps over the
 * tenant's saga data keys (hashes and sets) that either all take effect or, when one fails, are all
 * undone in the same atomic call. Inputs are validated here before Redis is called (and again in Lua).
 */
import { fcall, fcallReadOnly } from '../redis/replies.js';
import type { EngineContext } from '../engine/context.js';
import { badInput } from '../engine/errors.js';
import { asList, assertId, assertInt, assertPageSize, decodeCursor, encodeCursor, isJsonObject, MAX_INT32 } from '../engine/validation.js';
import { LIMITS } from '../limits.js';

export const SAGA_OPS = ['HSET', 'HDEL', 'HINCRBY', 'SADD', 'SREM'] as const;
export type SagaOp = (typeof SAGA_OPS)[number];

/** Steps; hash fields and set members, and HSET values, in UTF-8 bytes (src/limits.ts). */
export const { MAX_SAGA_STEPS, MAX_SAGA_FIELD_BYTES, MAX_SAGA_VALUE_BYTES } = LIMITS;
/** HINCRBY amount, min and max lie within [-MAX_SAGA_INT, MAX_SAGA_INT]. */
export const MAX_SAGA_INT = MAX_INT32;

export interface SagaStep {
  op: SagaOp;
  /** A saga data key id (`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`). */
  key: string;
  field?: string | null;
  value?: string | null;
  amount?: number | null;
  member?: string | null;
  /** HINCRBY only: the step fails when the resulting value would be below min or above max. */
  min?: number | null;
  max?: number | null;
}

export interface ExecuteSagaInput {
  id: string;
  steps: SagaStep[];
}

export type SagaStatus = 'COMPLETED' | 'ROLLED_BACK';

export interface SagaOutcome {
  id: string;
  status: SagaStatus;
  /** Steps that ran before the failure (all of them when completed). */
  stepsCompleted: number;
  /** 1-based index of the step that failed; null when completed. */
  failedStep: number | null;
  /** What failed: step, op and reason; null when completed. */
  error: string | null;
  createdAt: Date;
}

type Operand = 'field' | 'value' | 'amount' | 'member' | 'min' | 'max';

/** Operands each op takes, in the canonical order: required ones, then optional ones. */
const OPERANDS: Record<SagaOp, { required: Operand[]; optional: Operand[] }> = {
  HSET: { required: ['field', 'value'], optional: [] },
  HDEL: { required: ['field'], optional: [] },
  HINCRBY: { required: ['field', 'amount'], optional: ['min', 'max'] },
  SADD: { required: ['member'], optional: [] },
  SREM: { required: ['member'], optional: [] },
};

const ALL_OPERANDS: Operand[] = ['field', 'value', 'amount', 'member', 'min', 'max'];

/** The step as sent to Lua: full key name, fixed property order, absent operands omitted. */
interface CanonicalStep {
  op: SagaOp;
  key: string;
  field?: string;
  value?: string;
  amount?: number;
  member?: string;
  min?: number;
  max?: number;
}

interface SagaOutcomeReply {
  id: string;
  status: SagaStatus;
  stepsCompleted: number;
  failedStep: number | null;
  error: string | null;
  createdAt: number;
}

function assertText(value: unknown, what: string, minBytes: number, maxBytes: number): string {
  if (typeof value !== 'string') throw badInput(`${what} must be a string`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < minBytes || bytes > maxBytes) throw badInput(`${what} must be ${minBytes} to ${maxBytes} bytes long`);
  return value;
}

function isAbsent(value: unknown): value is null | undefined {
  return value === undefined || value === null;
}

function decodeOutcome(reply: SagaOutcomeReply): SagaOutcome {
  return {
    id: reply.id,
    status: reply.status,
    stepsCompleted: reply.stepsCompleted,
    failedStep: reply.failedStep ?? null,
    error: reply.error ?? null,
    createdAt: new Date(reply.createdAt),
  };
}

export class SagaEngine {
  constructor(private readonly ctx: EngineContext) {}

  /**
   * Validates one step and returns it in canonical form with `dataKey` as its full key name.
   * Operands that do not belong to the op must be absent (undefined or null).
   */
  private canonicalStep(step: SagaStep, index: number, dataKey: (id: string) => string): CanonicalStep {
    const what = `step ${index + 1}`;
    if (!isJsonObject(step)) throw badInput(`${what} must be an object`);
    const op = step.op;
    if (typeof op !== 'string' || !(SAGA_OPS as readonly string[]).includes(op)) {
      throw badInput(`${what}: op must be one of ${SAGA_OPS.join(', ')}`);
    }
    const { required, optional } = OPERANDS[op];
    const key = dataKey(assertId(step.key, `${what} key`));
    for (const name of ALL_OPERANDS) {
      const present = !isAbsent(step[name]);
      if (present && !required.includes(name) && !optional.includes(name)) throw badInput(`${what}: ${op} takes no ${name}`);
      if (!present && required.includes(name)) throw badInput(`${what}: ${op} needs ${name}`);
    }
    const canonical: CanonicalStep = { op, key };
    if (!isAbsent(step.field)) canonical.field = assertText(step.field, `${what} field`, 1, MAX_SAGA_FIELD_BYTES);
    if (!isAbsent(step.value)) canonical.value = assertText(step.value, `${what} value`, 0, MAX_SAGA_VALUE_BYTES);
    if (!isAbsent(step.amount)) canonical.amount = assertInt(step.amount, `${what} amount`, -MAX_SAGA_INT, MAX_SAGA_INT);
    if (!isAbsent(step.member)) canonical.member = assertText(step.member, `${what} member`, 1, MAX_SAGA_FIELD_BYTES);
    if (!isAbsent(step.min)) canonical.min = assertInt(step.min, `${what} min`, -MAX_SAGA_INT, MAX_SAGA_INT);
    if (!isAbsent(step.max)) canonical.max = assertInt(step.max, `${what} max`, -MAX_SAGA_INT, MAX_SAGA_INT);
    if (canonical.min !== undefined && canonical.max !== undefined && canonical.min > canonical.max) {
      throw badInput(`${what}: min must not be greater than max`);
    }
    return canonical;
  }

  /**
   * Runs a saga: every step in order, or, when one fails (a HINCRBY bound, a key of another type,
   * a non-integer value), none of them. The same id with the same steps returns the stored outcome
   * and runs nothing; with other steps, IDEMPOTENCY_CONFLICT.
   */
  async execute(tenant: string, input: ExecuteSagaInput): Promise<SagaOutcome> {
    const id = assertId(input?.id, 'saga id');
    const steps = input.steps;
    if (!Array.isArray(steps) || steps.length === 0) throw badInput('steps must be a non-empty list');
    if (steps.length > MAX_SAGA_STEPS) throw badInput(`a saga has at most ${MAX_SAGA_STEPS} steps`);
    const k = this.ctx.keys(tenant);
    const canonical = steps.map((step, i) => this.canonicalStep(step, i, k.sagaData));
    const dataKeys = [...new Set(canonical.map((s) => s.key))];
    const reply = await fcall<SagaOutcomeReply>(this.ctx.redis, 'saga_execute', [k.saga(id), ...dataKeys], [
      id,
      JSON.stringify(canonical),
      this.ctx.options.retentionSettledMs,
    ]);
    return decodeOutcome(reply);
  }

  /** The stored outcome of a saga, or null when it never ran. */
  async get(tenant: string, id: string): Promise<SagaOutcome | null> {
    const k = this.ctx.keys(tenant);
    const reply = await fcallReadOnly<SagaOutcomeReply | null>(this.ctx.redis, 'saga_get', [k.saga(assertId(id, 'saga id'))], []);
    return reply ? decodeOutcome(reply) : null;
  }

  /**
   * One page of a saga data hash (HSCAN, about `first` fields; {} when the key does not exist).
   * Pass nextCursor as `after` for the next page; null on the last.
   */
  async dataHash(tenant: string, key: string, page: DataPageArgs = {}): Promise<{ fields: Record<string, string>; nextCursor: string | null }> {
    const k = this.ctx.keys(tenant);
    const reply = await fcallReadOnly<{ fields?: unknown; next: string | null }>(this.ctx.redis, 'data_hash', [k.sagaData(key)], scanArgs(page));
    return { fields: isJsonObject(reply.fields) ? (reply.fields as Record<string, string>) : {}, nextCursor: scanCursor(reply.next) };
  }

  /** One page of a saga data set (SSCAN), each page's members sorted bytewise; paged as dataHash. */
  async dataSet(tenant: string, key: string, page: DataPageArgs = {}): Promise<{ members: string[]; nextCursor: string | null }> {
    const k = this.ctx.keys(tenant);
    const reply = await fcallReadOnly<{ members?: unknown; next: string | null }>(this.ctx.redis, 'data_set', [k.sagaData(key)], scanArgs(page));
    return { members: asList<string>(reply.members), nextCursor: scanCursor(reply.next) };
  }
}

export interface DataPageArgs {
  first?: number;
  after?: string | null;
}

/** A data page reads at most this many elements (default and maximum of `first`). */
export const DATA_PAGE_SIZE = 100;

function scanArgs(page: DataPageArgs): string[] {
  const first = assertPageSize(page.first, DATA_PAGE_SIZE);
  const cursor = decodeCursor(page.after) || '0';
  if (!/^\d{1,20}$/.test(cursor)) throw badInput('after is not a valid cursor');
  return [cursor, String(first)];
}

function scanCursor(next: string | null): string | null {
  return next === null ? null : encodeCursor(next);
}
