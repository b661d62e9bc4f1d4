/**
 * The engine: the one way the rest of atomflow talks to Redis. One typed engine per area, each with
 * one method per Redis Function in lua/<area>.lua.
 */
import type { RedisClient } from '../redis/client.js';
import { DEFAULT_ENGINE_OPTIONS, EngineContext, type EngineOptions } from '../engine/context.js';
import { WorkflowEngine } from '../workflows/workflows.engine.js';
import { SchedulerEngine } from '../scheduler/scheduler.engine.js';
import { OrderEngine } from '../orders/orders.engine.js';
import { SagaEngine } from '../sagas/sagas.engine.js';

export class Engine {
  readonly context: EngineContext;
  readonly workflows: WorkflowEngine;
  readonly scheduler: SchedulerEngine;
  readonly orders: OrderEngine;
  readonly sagas: SagaEngine;

  constructor(redis: RedisClient, options: Partial<EngineOptions> = {}) {
    this.context = new EngineContext(redis, { ...DEFAULT_ENGINE_OPTIONS, ...options });
    this.workflows = new WorkflowEngine(this.context);
    this.scheduler = new SchedulerEngine(this.context);
    this.orders = new OrderEngine(this.context);
    this.sagas = new SagaEngine(this.context);
  }
}
