/**
 * Typed calls to lua/scheduler.lua: one method per Redis Function. Inputs are validated before Redis
 * is called (and again in Lua), keys come from src/redis/keys.ts, replies are decoded here.
 *
 * Exactly once: claimDue hands out due entries under a lease, and apply runs an entry's transition
 * and marks it DONE or FAILED in one atomic call that does nothing for an entry no longer PENDING.
 * Two workers that both get hold of an entry (a lease ran out) therefore still apply it once.
 */
import { randomUUID } from 'node:crypto';
import { fcall, fcallReadOnly, fcallReadOnlyMany } from '../redis/replies.js';
import type { EngineContext, WorkflowRoute } from '../engine/context.js';
import { EngineError, badInput } from '../engine/errors.js';
import {
  asList,
  assertId,
  assertInt,
  assertName,
  assertPageSize,
  decodeCursor,
  encodeCursor,
  metadataPairs,
  MAX_INT32,
  type JsonObject,
} from '../engine/validation.js';
import type { Page } from '../workflows/workflows.engine.js';
import { LIMITS } from '../limits.js';

/** The largest time a JavaScript Date can hold, in ms; at most this many entries per claim. */
export const { MAX_RUN_AT_MS, MAX_CLAIM } = LIMITS;

export const SCHEDULE_STATUSES = ['PENDING', 'DONE', 'FAILED', 'CANCELLED'] as const;
export type ScheduleStatus = (typeof SCHEDULE_STATUSES)[number];
/** Default of WORKER_MAX_ATTEMPTS: failed attempts without an atomflow code before an entry is FAILED. */
export const DEFAULT_MAX_ATTEMPTS = 5;

export interface ScheduledTransition {
  id: string;
  workflowId: string;
  to: string;
  runAt: Date;
  status: ScheduleStatus;
  /**
   * For FAILED: 'CODE message', the code first (for example 'INVALID_TRANSITION cannot move ...',
   * 'ATTEMPTS_EXHAUSTED ...'); for a PENDING entry, the error of its last failed attempt.
   */
  error: string | null;
  /** When the entry was applied (DONE) or refused (FAILED); null otherwise. */
  executedAt: Date | null;
  createdAt: Date;
  /** Failed attempts without an atomflow error code (a Redis or script error). */
  attempts: number;
}

export interface ScheduleTransitionInput {
  id?: string | null;
  workflowId: string;
  to: string;
  runAt: Date;
  /** Merged into the workflow's metadata when the transition runs, like a transition's own. */
  metadata?: JsonObject | null;
}

/** The entry as the Lua functions answer it (lua/scheduler.lua: entry_reply). */
interface EntryReply {
  id: string;
  workflowId: string;
  machine: string;
  to: string;
  runAt: number;
  status: ScheduleStatus;
  error: string | null;
  executedAt: number | null;
  createdAt: number;
  attempts: number;
}

function decodeEntry(reply: EntryReply): ScheduledTransition {
  return {
    id: reply.id,
    workflowId: reply.workflowId,
    to: reply.to,
    runAt: new Date(reply.runAt),
    status: reply.status,
    error: reply.error,
    executedAt: reply.executedAt === null ? null : new Date(reply.executedAt),
    createdAt: new Date(reply.createdAt),
    attempts: reply.attempts,
  };
}

function assertRunAt(value: unknown): number {
  if (!(value instanceof Date)) throw badInput('runAt must be a date');
  const ms = value.getTime();
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_RUN_AT_MS) {
    throw badInput(`runAt must be a valid date from 1970-01-01T00:00:00.000Z to ${new Date(MAX_RUN_AT_MS).toISOString()}`);
  }
  return ms;
}

/** Attempts of apply when its keys turn out to be stale (the route or the entry was re-created). */
const APPLY_ATTEMPTS = 3;

export class SchedulerEngine {
  constructor(private readonly ctx: EngineContext) {}

  /** Schedules a transition; a target not allowed from the current state is decided when it runs. */
  async schedule(tenant: string, input: ScheduleTransitionInput): Promise<ScheduledTransition> {
    const id = input.id === undefined || input.id === null ? randomUUID() : assertId(input.id, 'id');
    const workflowId = assertId(input.workflowId, 'workflowId');
    const to = assertName(input.to, 'to');
    const runAt = assertRunAt(input.runAt);
    const meta = metadataPairs(input.metadata);
    const k = this.ctx.keys(tenant);
    return this.ctx.withWorkflowRoute(tenant, workflowId, async (route) => {
      const reply = await fcall<EntryReply>(
        this.ctx.redis,
        'sched_create',
        [...k.scheduleKeys(id), k.workflow(workflowId), k.machine(route.machine)],
        [id, workflowId, route.machine, to, runAt, meta],
      );
      return decodeEntry(reply);
    });
  }

  /** Cancels a PENDING entry (NOT_FOUND when unknown, STATE_CONFLICT when no longer pending). */
  async cancel(tenant: string, id: string): Promise<ScheduledTransition> {
    assertId(id, 'id');
    const k = this.ctx.keys(tenant);
    return decodeEntry(
      await fcall<EntryReply>(this.ctx.redis, 'sched_cancel', k.scheduleKeys(id), [id, this.ctx.options.retentionSettledMs]),
    );
  }

  async get(tenant: string, id: string): Promise<ScheduledTransition | null> {
    const reply = await this.getRaw(tenant, id);
    return reply ? decodeEntry(reply) : null;
  }

  /**
   * Claims up to `limit` due entries for `leaseMs`: nobody else claims them meanwhile, and they
   * become claimable again when the lease runs out (a claimant that died). Returns their ids.
   */
  async claimDue(tenant: string, options: { limit: number; leaseMs: number }): Promise<string[]> {
    const limit = assertInt(options.limit, 'limit', 1, MAX_CLAIM);
    const leaseMs = assertInt(options.leaseMs, 'leaseMs', 1, MAX_INT32);
    const k = this.ctx.keys(tenant);
    return asList<string>(await fcall<unknown>(this.ctx.redis, 'sched_claim', [k.scheduleDue()], [limit, leaseMs]));
  }

  /**
   * Applies an entry: runs its transition and marks it DONE, or marks it FAILED with the error
   * code, in one atomic call. An entry already DONE, FAILED or CANCELLED is returned unchanged.
   * A failure without an atomflow code (a Redis or script error, keys still stale after retries) is
   * counted as an attempt: the entry stays PENDING with the error, and after `maxAttempts` it is
   * FAILED with ATTEMPTS_EXHAUSTED. Errors without a Redis reply (connection lost) count nothing.
   */
  async apply(tenant: string, entryId: string, options: { maxAttempts?: number } = {}): Promise<ScheduledTransition> {
    assertId(entryId, 'id');
    const maxAttempts = assertInt(options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, 'maxAttempts', 1, 1000);
    const k = this.ctx.keys(tenant);
    const retention = this.ctx.options.retentionSettledMs;
    for (let attempt = 1; ; attempt++) {
      const entry = await this.getRaw(tenant, entryId);
      if (!entry) throw new EngineError('NOT_FOUND', `scheduled transition ${entryId} not found`);
      try {
        // A workflow that is gone still gets a call, with its entry's machine, so the entry is FAILED.
        const route: WorkflowRoute = (await this.ctx.route(tenant, entry.workflowId, attempt > 1)) ?? {
          machine: entry.machine,
          kind: 'workflow',
          userId: '',
          productId: '',
        };
        const reply = await fcall<EntryReply>(
          this.ctx.redis,
          'sched_apply',
          [...k.scheduleKeys(entryId), ...this.ctx.workflowBlock(k, entry.workflowId, route)],
          [...this.ctx.eventArgs(k), entryId, entry.workflowId, route.machine, route.userId, route.productId, maxAttempts, retention],
        );
        return decodeEntry(reply);
      } catch (err) {
        if (err instanceof EngineError && err.code === 'STALE_KEYS' && attempt < APPLY_ATTEMPTS) continue;
        if (!isReplyFailure(err)) throw err;
        const reason = err instanceof EngineError ? `${err.code} ${err.message}` : (err as Error).message;
        const reply = await fcall<EntryReply>(this.ctx.redis, 'sched_attempt_failed', k.scheduleKeys(entryId), [
          entryId,
          reason || 'unknown error',
          maxAttempts,
          retention,
        ]);
        return decodeEntry(reply);
      }
    }
  }

  /** A tenant's entries, newest first (by their last status change), optionally of one status. */
  async list(
    tenant: string,
    filter: { status?: ScheduleStatus | null; first?: number; after?: string | null } = {},
  ): Promise<Page<ScheduledTransition>> {
    const first = assertPageSize(filter.first, 20);
    const status = filter.status ?? null;
    if (status !== null && !(SCHEDULE_STATUSES as readonly string[]).includes(status)) throw badInput('unknown status');
    const after = decodeCursor(filter.after);
    const position = status === null ? /^\d{13}:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/ : new RegExp(`^${status}:\\d{13}:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`);
    if (after !== '' && !position.test(after)) throw badInput('after is not a cursor of this listing');
    const k = this.ctx.keys(tenant);
    const index = status === null ? k.scheduleIndex() : k.scheduleIndexByStatus();
    const page = await fcallReadOnly<{ ids: unknown; next: string | null }>(this.ctx.redis, 'sched_list', [index], [status ?? '', first, after]);
    const replies = await fcallReadOnlyMany<EntryReply | null>(
      this.ctx.redis,
      'sched_get',
      asList<string>(page.ids).map((id) => ({ keys: [k.scheduleEntry(id)], args: [] })),
    );
    return {
      items: replies.filter((r): r is EntryReply => r !== null).map(decodeEntry),
      nextCursor: page.next === null ? null : encodeCursor(page.next),
    };
  }

  private async getRaw(tenant: string, id: string): Promise<EntryReply | null> {
    assertId(id, 'id');
    const k = this.ctx.keys(tenant);
    return fcallReadOnly<EntryReply | null>(this.ctx.redis, 'sched_get', [k.scheduleEntry(id)], []);
  }
}

/** An error Redis answered (the call ran and failed), as opposed to a lost connection. */
function isReplyFailure(err: unknown): boolean {
  if (err instanceof EngineError) return err.code === 'STALE_KEYS' || err.code === 'INTERNAL';
  return err instanceof Error && err.name === 'ReplyError';
}
