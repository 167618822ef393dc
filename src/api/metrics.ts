import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

/** Label for requests no route matched: the raw URL would make one series per scanned path. */
const UNMATCHED = 'unmatched';

/**
 * Count every request's duration by route pattern (`/api/task/:type/info`, never the raw URL, so
 * the series stay few). Added at the root before the routes so every dialect is measured.
 */
export function measureRequests(app: FastifyInstance): void {
  const histogram = app.core.metrics.httpDuration;
  app.addHook('onResponse', async (request, reply) => {
    histogram.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? UNMATCHED,
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
}

/**
 * `GET /metrics`: this node's metrics in Prometheus' text format. With `metrics.token` set
 * (`FERRY_METRICS_TOKEN`) it wants `Authorization: Bearer <token>`, else 401.
 */
export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  const { metrics, config } = app.core;
  const expected = config.metrics.token ? Buffer.from(`Bearer ${config.metrics.token}`) : null;
  const schema = {
    hide: true,
    response: {
      200: { type: 'string', description: "Prometheus' text format" },
      401: { type: 'string', description: 'the token is missing or wrong' },
    },
  };
  app.get('/metrics', { schema }, async (request, reply) => {
    if (expected) {
      const given = Buffer.from(request.headers.authorization ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected))
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer realm="ferry metrics"')
          .type('text/plain; charset=utf-8')
          .send('401 Unauthorized: /metrics needs Authorization: Bearer <FERRY_METRICS_TOKEN>\n');
    }
    const { contentType, body } = await metrics.render();
    return reply.type(contentType).send(body);
  });
}
