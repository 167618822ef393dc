import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import { enabledWebhooks, insertDeliveries, type NewDelivery } from '../store/webhook-store.ts';
import type { Task } from '../tasks/model.ts';
import { type SubscribableEvent, taskEventOf, type Webhook, type WebhookEvent } from './model.ts';

/** How long a delivery is retried before it is marked failed, unless configured otherwise. */
export const DEFAULT_RETRY_WINDOW_MS = 24 * 60 * 60 * 1000;

/** What an event reports: the task (in the AList view) and, for job events, the job. */
export interface EventPayload {
  /** The task in AList's view (`alistTask(task, 'seed')`), or null when the event has none. */
  task: Record<string, unknown> | null;
  /** The job, for `job.run.finished`. */
  job?: Record<string, unknown>;
  /** The task kind, matched against a webhook's `kinds` filter. */
  kind?: string;
}

export interface EnqueueOptions {
  now?: number;
  /** How long the deliveries are retried (default 24 h). */
  retryWindowMs?: number;
  /** The enabled webhooks, when the caller has them already (else read with `db`). */
  webhooks?: readonly Webhook[];
}

/** The JSON body of a delivery: the same bytes on every attempt. */
export function deliveryBody(
  id: string,
  event: WebhookEvent,
  createdAt: number,
  payload: EventPayload,
): string {
  return JSON.stringify({
    id,
    event,
    created_at: new Date(createdAt).toISOString(),
    task: payload.task,
    ...(payload.job && { job: payload.job }),
  });
}

/** Whether `hook` wants `event` about a task of `kind`. */
export function subscribes(hook: Webhook, event: SubscribableEvent, kind: string | undefined): boolean {
  if (!hook.enabled || !hook.events.includes(event)) return false;
  return hook.kinds.length === 0 || kind === undefined || hook.kinds.includes(kind);
}

/**
 * Write `event` into the webhook outbox: one delivery per subscribed webhook, with `db`. Call it
 * with the transaction that records what the event reports (a task's final state, a job run's
 * end): the event is then stored exactly when that is, and the dispatcher sends it even if the
 * process dies right after the commit. Returns the delivery ids.
 */
export async function enqueueEvent(
  db: Kysely<Database>,
  event: SubscribableEvent,
  payload: EventPayload,
  options: EnqueueOptions = {},
): Promise<string[]> {
  const now = options.now ?? Date.now();
  const hooks = options.webhooks ?? (await enabledWebhooks(db));
  const deliveries: NewDelivery[] = hooks
    .filter((hook) => subscribes(hook, event, payload.kind))
    .map((hook) => {
      const id = randomUUID();
      return { id, webhookId: hook.id, event, body: deliveryBody(id, event, now, payload) };
    });
  await insertDeliveries(db, deliveries, now, now + (options.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS));
  return deliveries.map((d) => d.id);
}

export interface OutboxOptions {
  /** The task as webhooks show it (AList's view), given at wiring time. */
  taskView: (task: Task) => Record<string, unknown>;
  retryWindowMs: number;
  /**
   * How long the list of enabled webhooks is reused before it is read again. Changes made
   * through this node clear it at once; another node's are seen within this time.
   */
  cacheMs: number;
  /** Told after each commit that wrote deliveries, so the dispatcher sends them without waiting for its poll. */
  onEnqueued?: () => void;
}

/**
 * The task store's final-state listener: a task that ends succeeded, failed or canceled writes
 * its event into the outbox in the same transaction as its state.
 */
export class WebhookOutbox {
  private cached: { at: number; hooks: Webhook[] } | null = null;

  constructor(private readonly options: OutboxOptions) {}

  /** Forget the cached webhooks (one was created, changed or deleted). */
  invalidate(): void {
    this.cached = null;
  }

  private async hooks(db: Kysely<Database>, now: number): Promise<Webhook[]> {
    if (this.cached && now - this.cached.at < this.options.cacheMs) return this.cached.hooks;
    const hooks = await enabledWebhooks(db);
    this.cached = { at: now, hooks };
    return hooks;
  }

  /** For `SqlTaskStore.onFinal`: the events of `tasks`, which just reached a final state in `db`'s transaction. */
  readonly onFinal = async (db: Kysely<Database>, tasks: readonly Task[]): Promise<void> => {
    const now = Date.now();
    const hooks = await this.hooks(db, now);
    if (hooks.length === 0) return;
    let wrote = false;
    for (const task of tasks) {
      const event = taskEventOf(task.state);
      if (!event) continue;
      const ids = await enqueueEvent(
        db,
        event,
        { task: this.options.taskView(task), kind: task.kind },
        { now, retryWindowMs: this.options.retryWindowMs, webhooks: hooks },
      );
      if (ids.length > 0) wrote = true;
    }
    // The listener runs before the commit: the dispatcher looks a moment later (and polls anyway).
    if (wrote && this.options.onEnqueued) setTimeout(this.options.onEnqueued, 50).unref();
  };

  /**
   * The event of a task that is not a final state's (`job.run.finished`: the run's task, and its
   * job), with the task in the webhooks' view; call it with the transaction that records the run.
   */
  enqueueTask(
    db: Kysely<Database>,
    event: SubscribableEvent,
    task: Task,
    extra: { job?: Record<string, unknown> } = {},
  ): Promise<string[]> {
    return this.enqueue(db, event, { task: this.options.taskView(task), kind: task.kind, ...extra });
  }

  /** `enqueueEvent` with this node's settings and cached webhooks (for job events). */
  async enqueue(db: Kysely<Database>, event: SubscribableEvent, payload: EventPayload): Promise<string[]> {
    const now = Date.now();
    const ids = await enqueueEvent(db, event, payload, {
      now,
      retryWindowMs: this.options.retryWindowMs,
      webhooks: await this.hooks(db, now),
    });
    if (ids.length > 0 && this.options.onEnqueued) setTimeout(this.options.onEnqueued, 50).unref();
    return ids;
  }
}
