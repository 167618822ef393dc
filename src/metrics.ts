import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { TASK_KINDS } from './config.ts';
import { isDone, TASK_STATES, type Task } from './tasks/model.ts';

/** How many tasks of each kind are in each state, from the store (one grouped count). */
export type TaskCounts = () => Promise<{ kind: string; state: string; count: number }[]>;

/** What the runner tells the metrics when an attempt of a task ends (see `Metrics.attemptEnded`). */
export interface TaskObserver {
  attemptEnded(task: Task, after: Task | null, bytesMoved: number): void;
}

/** Outcomes of `ferry_webhook_deliveries_total`: one per attempt. */
export type DeliveryOutcome = 'delivered' | 'retry' | 'failed';

/**
 * This node's Prometheus metrics (`GET /metrics`), in a registry of its own: each node exports
 * its own counters, and several cores in one process (tests) do not share them.
 * `ferry_tasks` is the store's truth, read at scrape time; the rest count what this node did.
 */
export class Metrics implements TaskObserver {
  readonly registry = new Registry();
  readonly taskDuration: Histogram<'kind' | 'outcome'>;
  readonly bytesTransferred: Counter<'kind'>;
  readonly taskRetries: Counter<'kind'>;
  readonly webhookDeliveries: Counter<'outcome'>;
  /** `ferry_job_runs_total{outcome}`: counted by the job runner, one per finished run. */
  readonly jobRuns: Counter<'outcome'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>;

  constructor(taskCounts: TaskCounts) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'ferry_tasks',
      help: 'Tasks in the store by kind and state (all nodes sharing the store)',
      labelNames: ['kind', 'state'] as const,
      registers,
      async collect() {
        const counts = await taskCounts();
        this.reset();
        // Every known kind and state is exported, 0 included, so a series never vanishes.
        for (const kind of TASK_KINDS) for (const state of TASK_STATES) this.set({ kind, state }, 0);
        for (const { kind, state, count } of counts) this.set({ kind, state }, count);
      },
    });
    this.taskDuration = new Histogram({
      name: 'ferry_task_duration_seconds',
      help: 'Time from a task first starting to its final state, by kind and outcome',
      labelNames: ['kind', 'outcome'] as const,
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers,
    });
    this.bytesTransferred = new Counter({
      name: 'ferry_bytes_transferred_total',
      help: 'Bytes moved by tasks on this node, by kind',
      labelNames: ['kind'] as const,
      registers,
    });
    this.taskRetries = new Counter({
      name: 'ferry_task_retries_total',
      help: 'Failed task attempts scheduled to run again, by kind',
      labelNames: ['kind'] as const,
      registers,
    });
    this.webhookDeliveries = new Counter({
      name: 'ferry_webhook_deliveries_total',
      help: 'Webhook delivery attempts sent by this node: delivered, retry (will be tried again) or failed (given up)',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.jobRuns = new Counter({
      name: 'ferry_job_runs_total',
      help: 'Job runs finished on this node, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'ferry_http_request_duration_seconds',
      help: 'HTTP request duration by method, route pattern and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }

  attemptEnded(task: Task, after: Task | null, bytesMoved: number): void {
    if (bytesMoved > 0) this.bytesTransferred.inc({ kind: task.kind }, bytesMoved);
    if (!after) return;
    if (after.state === 'waiting_retry') this.taskRetries.inc({ kind: task.kind });
    if (isDone(after.state)) {
      const started = after.startTime ?? after.createdAt;
      const ended = after.endTime ?? Date.now();
      this.taskDuration.observe(
        { kind: task.kind, outcome: after.state },
        Math.max(0, ended - started) / 1000,
      );
    }
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
