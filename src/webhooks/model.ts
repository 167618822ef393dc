/*
 * Webhooks in ferry's terms: which events exist, a subscription, and a delivery with its attempts.
 * Nothing here does I/O; the store (`store/webhook-store.ts`) keeps them, `outbox.ts` writes
 * deliveries, `dispatcher.ts` sends them.
 */

/** Events a webhook may subscribe to. `ping` is sent by `test` only, whatever the subscription. */
export const WEBHOOK_EVENTS = ['task.succeeded', 'task.failed', 'task.canceled', 'job.run.finished'] as const;
export type SubscribableEvent = (typeof WEBHOOK_EVENTS)[number];
export type WebhookEvent = SubscribableEvent | 'ping';

export interface Webhook {
  id: number;
  url: string;
  secret: string;
  events: SubscribableEvent[];
  /** Task kinds whose events are sent; empty: every kind. */
  kinds: string[];
  enabled: boolean;
  createdAt: number;
  updatedAt: number;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface Delivery {
  id: string;
  webhookId: number;
  event: string;
  body: string;
  state: DeliveryState;
  attempts: number;
  nextAttemptAt: number | null;
  giveUpAt: number;
  deliveredAt: number | null;
  createdAt: number;
}

/** How one attempt ended. */
export interface Attempt {
  deliveryId: string;
  attempt: number;
  statusCode: number | null;
  error: string;
  durationMs: number;
  nextAttemptAt: number | null;
  deliveredAt: number | null;
  at: number;
}

/** The task event a final state sends, or null for a state that sends none. */
export function taskEventOf(state: string): SubscribableEvent | null {
  if (state === 'succeeded') return 'task.succeeded';
  if (state === 'failed') return 'task.failed';
  if (state === 'canceled') return 'task.canceled';
  return null;
}
