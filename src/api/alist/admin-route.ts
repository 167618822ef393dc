import type { FastifyInstance, FastifyRequest } from 'fastify';
import { adminOf } from '../context.ts';
import { ok } from './envelope.ts';
import { envelope } from './schemas.ts';

/** What an admin route takes and answers: its schemas' parts (no body schema on a GET). */
export interface AdminRouteInput {
  body?: object;
  querystring?: object;
  /** What `data` holds in a success reply; `data: null` when absent. */
  reply?: string;
}

/**
 * A registrar of admin-only AList routes under `tags`: the caller must be an admin, the reply is
 * the envelope around what `run` returns, and errors reach the dialect's one error handler.
 */
export function adminRoutes(app: FastifyInstance, tags: string[]) {
  return (
    method: 'GET' | 'POST',
    url: string,
    run: (request: FastifyRequest) => Promise<unknown>,
    input: AdminRouteInput = {},
  ) =>
    app.route({
      method,
      url,
      schema: {
        tags,
        // Fastify takes no body schema on a GET.
        ...(input.body && method === 'POST' && { body: input.body }),
        ...(input.querystring && { querystring: input.querystring }),
        response: envelope(input.reply ?? 'data: null'),
      },
      handler: async (request) => {
        await adminOf(request);
        return ok(await run(request));
      },
    });
}
