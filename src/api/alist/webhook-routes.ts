import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Webhook } from '../../webhooks/model.ts';
import type { DeliveryLogEntry } from '../../webhooks/webhook-service.ts';
import { adminOf } from '../context.ts';
import { ok } from './envelope.ts';
import { envelope } from './schemas.ts';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A webhook as the API shows it: the secret is never shown back (`has_secret` says one is set). */
function webhookView(hook: Webhook) {
  return {
    id: hook.id,
    url: hook.url,
    events: hook.events,
    kinds: hook.kinds,
    enabled: hook.enabled,
    secret: '',
    has_secret: hook.secret !== '',
    created_at: iso(hook.createdAt),
    updated_at: iso(hook.updatedAt),
  };
}

/** One row of `deliveries`: an attempt (or, with `attempt: 0`, a delivery waiting for its first). */
function deliveryView({ delivery, attempt }: DeliveryLogEntry) {
  return {
    id: delivery.id,
    event: delivery.event,
    attempt: attempt?.attempt ?? 0,
    status_code: attempt?.statusCode ?? null,
    error: attempt?.error ?? '',
    duration_ms: attempt ? attempt.durationMs : null,
    next_attempt_at: iso(attempt ? attempt.nextAttemptAt : delivery.nextAttemptAt),
    delivered_at: iso(attempt ? attempt.deliveredAt : null),
    // ferry's additions: the delivery as a whole, and when this attempt was made
    state: delivery.state,
    attempted_at: iso(attempt?.at ?? null),
  };
}

/** A parameter from the query string, or the JSON body (AList's clients send either). */
function param(request: FastifyRequest, name: string): unknown {
  const fromQuery = (request.query as Record<string, unknown> | undefined)?.[name];
  if (fromQuery !== undefined) return fromQuery;
  const body = request.body;
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

/**
 * What the webhook routes take: `id` (and `limit`, `delivery_id`) in the query or the body, as
 * AList's clients send either; the webhook service checks each value and names what is wrong.
 */
const QUERY = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'webhook id' },
    delivery_id: { type: 'string', description: 'redeliver: the delivery (X-Ferry-Delivery)' },
    limit: { type: 'string', description: 'deliveries: how many deliveries, 1–200 (default 50)' },
  },
};
const ID_BODY = {
  properties: { id: { description: 'the webhook' }, delivery_id: { description: 'the delivery' } },
};
const WEBHOOK_BODY = {
  properties: {
    id: { description: 'update: the webhook' },
    url: { description: 'string: where deliveries are POSTed' },
    events: { description: 'array of event names' },
    kinds: { description: 'array of task kinds (empty: all)' },
    enabled: { description: 'boolean' },
    secret: { description: 'string: signs each delivery; empty on update keeps the old one' },
  },
};

/** `/api/admin/webhook/*` (admins only): signed, durable webhooks (see docs/webhooks.md). */
export async function alistWebhookRoutes(app: FastifyInstance): Promise<void> {
  const { webhooks } = app.core;
  const route = (
    method: 'GET' | 'POST',
    url: string,
    run: (request: FastifyRequest) => Promise<unknown>,
    input: { summary: string; body?: object; reply: string },
  ) =>
    app.route({
      method,
      url: `/api/admin/webhook/${url}`,
      schema: {
        tags: ['webhooks'],
        summary: input.summary,
        querystring: QUERY,
        // Fastify takes no body schema on a GET.
        ...(method === 'POST' && { body: input.body ?? ID_BODY }),
        response: envelope(input.reply),
      },
      handler: async (request) => {
        await adminOf(request);
        return ok(await run(request));
      },
    });

  route('POST', 'create', async (request) => webhookView(await webhooks.create(request.body)), {
    summary: 'Create a webhook {url, secret, events, kinds?, enabled?}',
    body: WEBHOOK_BODY,
    reply: 'the webhook (its secret never shown back)',
  });
  route(
    'GET',
    'list',
    async () => {
      const all = (await webhooks.list()).map(webhookView);
      return { content: all, total: all.length };
    },
    { summary: 'Every webhook (secrets never shown)', reply: '`{content: [webhook], total}`' },
  );
  route('GET', 'get', async (request) => webhookView(await webhooks.get(param(request, 'id'))), {
    summary: 'One webhook by id',
    reply: 'the webhook',
  });
  route('POST', 'update', async (request) => webhookView(await webhooks.update(request.body)), {
    summary: 'Replace a webhook (body: the webhook with its id; no secret keeps it)',
    body: WEBHOOK_BODY,
    reply: 'the webhook',
  });
  route(
    'POST',
    'delete',
    async (request) => {
      await webhooks.delete(param(request, 'id'));
      return null;
    },
    { summary: 'Delete a webhook with its deliveries', reply: 'data: null' },
  );
  route('POST', 'test', async (request) => ({ delivery_id: await webhooks.test(param(request, 'id')) }), {
    summary: 'Send a signed ping event now',
    reply: '`{delivery_id}`',
  });
  route(
    'GET',
    'deliveries',
    async (request) =>
      (await webhooks.deliveries(param(request, 'id'), param(request, 'limit'))).map(deliveryView),
    { summary: 'The delivery log, one row per attempt, newest first', reply: '[delivery attempt]' },
  );
  route(
    'POST',
    'redeliver',
    async (request) => {
      const delivery = await webhooks.redeliver(param(request, 'delivery_id'));
      return { id: delivery.id, state: delivery.state, next_attempt_at: iso(delivery.nextAttemptAt) };
    },
    { summary: 'Send a delivery again (same id, new retry window)', reply: '`{id, state, next_attempt_at}`' },
  );
}
