import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isAdmin } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import type { Webhook } from '../../webhooks/model.ts';
import type { DeliveryLogEntry } from '../../webhooks/webhook-service.ts';
import { principalOf } from '../context.ts';
import { ok, sendError } from './envelope.ts';

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

async function requireAdmin(request: FastifyRequest): Promise<void> {
  const p = await principalOf(request);
  if (!isAdmin(p)) throw new FerryError('E_FORBIDDEN', 'You are not an admin');
}

/** A parameter from the query string, or the JSON body (AList's clients send either). */
function param(request: FastifyRequest, name: string): unknown {
  const fromQuery = (request.query as Record<string, unknown> | undefined)?.[name];
  if (fromQuery !== undefined) return fromQuery;
  const body = request.body;
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

/** `/api/admin/webhook/*` (admins only): signed, durable webhooks (see docs/webhooks.md). */
export async function alistWebhookRoutes(app: FastifyInstance): Promise<void> {
  const { webhooks } = app.core;
  const route = (method: 'GET' | 'POST', url: string, run: (request: FastifyRequest) => Promise<unknown>) =>
    app.route({
      method,
      url: `/api/admin/webhook/${url}`,
      handler: async (request, reply) => {
        try {
          await requireAdmin(request);
          return ok(await run(request));
        } catch (err) {
          return sendError(reply, err);
        }
      },
    });

  route('POST', 'create', async (request) => webhookView(await webhooks.create(request.body)));
  route('GET', 'list', async () => {
    const all = (await webhooks.list()).map(webhookView);
    return { content: all, total: all.length };
  });
  route('GET', 'get', async (request) => webhookView(await webhooks.get(param(request, 'id'))));
  route('POST', 'update', async (request) => webhookView(await webhooks.update(request.body)));
  route('POST', 'delete', async (request) => {
    await webhooks.delete(param(request, 'id'));
    return null;
  });
  route('POST', 'test', async (request) => ({ delivery_id: await webhooks.test(param(request, 'id')) }));
  route('GET', 'deliveries', async (request) =>
    (await webhooks.deliveries(param(request, 'id'), param(request, 'limit'))).map(deliveryView),
  );
  route('POST', 'redeliver', async (request) => {
    const delivery = await webhooks.redeliver(param(request, 'delivery_id'));
    return { id: delivery.id, state: delivery.state, next_attempt_at: iso(delivery.nextAttemptAt) };
  });
}
