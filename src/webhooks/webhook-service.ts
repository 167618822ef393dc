import { randomUUID } from 'node:crypto';
import { TASK_KINDS } from '../config.ts';
import type { HostPolicy } from '../download/url-policy.ts';
import { FerryError } from '../errors.ts';
import type { WebhookInput, WebhookStore } from '../store/webhook-store.ts';
import type { WebhookDispatcher } from './dispatcher.ts';
import {
  type Attempt,
  type Delivery,
  type SubscribableEvent,
  WEBHOOK_EVENTS,
  type Webhook,
} from './model.ts';
import { deliveryBody, type WebhookOutbox } from './outbox.ts';
import { checkTarget, parseWebhookUrl } from './target-policy.ts';

/** One row of a webhook's delivery log: an attempt, or a delivery not attempted yet (attempt 0). */
export interface DeliveryLogEntry {
  delivery: Delivery;
  attempt: Attempt | null;
}

/** Most deliveries `deliveries` shows (each with its attempts). */
const MAX_DELIVERIES = 200;

/**
 * Webhooks as an admin manages them: validated input, the target policy checked on create and
 * update, and the test and redeliver actions. The HTTP dialect calls this; it never sees the store.
 */
export class WebhookService {
  constructor(
    private readonly deps: {
      store: WebhookStore;
      outbox: WebhookOutbox;
      dispatcher: WebhookDispatcher;
      policy: HostPolicy;
      retryWindowMs: number;
    },
  ) {}

  /** Create a webhook. `E_BAD_REQUEST` for invalid fields or a refused target. */
  async create(body: unknown): Promise<Webhook> {
    const input = await this.input(body, null);
    const hook = await this.deps.store.create(input);
    this.deps.outbox.invalidate();
    return hook;
  }

  list(): Promise<Webhook[]> {
    return this.deps.store.list();
  }

  /** `E_WEBHOOK_NOT_FOUND` when there is none with `id`. */
  async get(id: unknown): Promise<Webhook> {
    const hook = await this.deps.store.get(webhookId(id));
    if (!hook) throw new FerryError('E_WEBHOOK_NOT_FOUND', 'webhook not found');
    return hook;
  }

  /**
   * Replace a webhook's fields (`body.id` names it). A missing or empty `secret` keeps the stored
   * one, so a client may send back what `get` gave (which never shows it).
   */
  async update(body: unknown): Promise<Webhook> {
    const existing = await this.get((body as { id?: unknown } | null)?.id);
    const input = await this.input(body, existing);
    const hook = await this.deps.store.update(existing.id, input);
    if (!hook) throw new FerryError('E_WEBHOOK_NOT_FOUND', 'webhook not found');
    this.deps.outbox.invalidate();
    return hook;
  }

  async delete(id: unknown): Promise<void> {
    if (!(await this.deps.store.delete(webhookId(id))))
      throw new FerryError('E_WEBHOOK_NOT_FOUND', 'webhook not found');
    this.deps.outbox.invalidate();
  }

  /** Queue a `ping` delivery to the webhook (enabled or not) and send it now; returns its id. */
  async test(id: unknown): Promise<string> {
    const hook = await this.get(id);
    const now = Date.now();
    const deliveryId = randomUUID();
    const body = deliveryBody(deliveryId, 'ping', now, { task: null });
    await this.deps.store.insertDeliveries(
      [{ id: deliveryId, webhookId: hook.id, event: 'ping', body }],
      now,
      now + this.deps.retryWindowMs,
    );
    this.deps.dispatcher.wake();
    return deliveryId;
  }

  /** The webhook's newest deliveries, one entry per attempt, newest first. */
  async deliveries(id: unknown, limit: unknown): Promise<DeliveryLogEntry[]> {
    const hook = await this.get(id);
    const n = limit === undefined || limit === '' ? 50 : Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > MAX_DELIVERIES)
      throw new FerryError('E_BAD_REQUEST', `limit must be an integer 1..${MAX_DELIVERIES}`);
    const { deliveries, attempts } = await this.deps.store.deliveriesOf(hook.id, n);
    const byDelivery = new Map<string, Attempt[]>();
    for (const a of attempts) byDelivery.set(a.deliveryId, [...(byDelivery.get(a.deliveryId) ?? []), a]);
    const entries: DeliveryLogEntry[] = [];
    for (const delivery of deliveries) {
      const own = byDelivery.get(delivery.id) ?? [];
      // A redelivered one that is due again, or a new one, shows its coming attempt first.
      if (
        delivery.state === 'pending' &&
        (own.length === 0 || own[0]?.nextAttemptAt !== delivery.nextAttemptAt)
      )
        entries.push({ delivery, attempt: null });
      for (const attempt of own) entries.push({ delivery, attempt });
    }
    return entries;
  }

  /**
   * Send a delivery again (same id, a new retry window), whatever its state; `E_BAD_REQUEST`
   * while an attempt of it is under way.
   */
  async redeliver(deliveryId: unknown): Promise<Delivery> {
    if (typeof deliveryId !== 'string' || deliveryId === '')
      throw new FerryError('E_BAD_REQUEST', 'delivery_id is required');
    const now = Date.now();
    const delivery = await this.deps.store.redeliver(deliveryId, now, now + this.deps.retryWindowMs);
    if (!delivery) throw new FerryError('E_WEBHOOK_NOT_FOUND', 'delivery not found');
    if (delivery === 'busy')
      throw new FerryError(
        'E_BAD_REQUEST',
        'an attempt of this delivery is under way; redeliver it once that attempt has ended',
      );
    this.deps.dispatcher.wake();
    return delivery;
  }

  /** Validate a create or update body; `existing` supplies what an update leaves out. */
  private async input(body: unknown, existing: Webhook | null): Promise<WebhookInput> {
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new FerryError('E_BAD_REQUEST', 'the body must be a JSON object');
    const b = body as Record<string, unknown>;
    const url = parseWebhookUrl(b.url ?? existing?.url);
    await checkTarget(this.deps.policy, url);
    let secret = b.secret;
    if ((secret === undefined || secret === '') && existing) secret = existing.secret;
    if (typeof secret !== 'string' || secret === '')
      throw new FerryError('E_BAD_REQUEST', 'secret must be a non-empty string');
    if (secret.length > 1024) throw new FerryError('E_BAD_REQUEST', 'secret is too long (1024 at most)');
    const events = b.events ?? existing?.events;
    if (
      !Array.isArray(events) ||
      events.length === 0 ||
      !events.every((e) => (WEBHOOK_EVENTS as readonly unknown[]).includes(e))
    )
      throw new FerryError(
        'E_BAD_REQUEST',
        `events must be a non-empty list of: ${WEBHOOK_EVENTS.join(', ')}`,
      );
    const kinds = b.kinds ?? existing?.kinds ?? [];
    if (!Array.isArray(kinds) || !kinds.every((k) => (TASK_KINDS as readonly unknown[]).includes(k)))
      throw new FerryError('E_BAD_REQUEST', `kinds must be a list of task kinds: ${TASK_KINDS.join(', ')}`);
    const enabled = b.enabled ?? existing?.enabled ?? true;
    if (typeof enabled !== 'boolean') throw new FerryError('E_BAD_REQUEST', 'enabled must be true or false');
    return {
      url: url.href,
      secret,
      events: [...new Set(events as SubscribableEvent[])],
      kinds: [...new Set(kinds as string[])],
      enabled,
    };
  }
}

function webhookId(value: unknown): number {
  const id = typeof value === 'string' && value !== '' ? Number(value) : value;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1)
    throw new FerryError('E_BAD_REQUEST', 'id must be a positive integer');
  return id;
}
