import swagger from '@fastify/swagger';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  LogController,
  type RouteOptions,
} from 'fastify';
import { alistDialect } from './api/alist/dialect.ts';
import { errorEnvelope } from './api/alist/envelope.ts';
import { CURRENT_PREFIX } from './api/alist/flavour.ts';
import { efileRoutes } from './api/efile/routes.ts';
import { koodriveRoutes } from './api/koodrive/routes.ts';
import { measureRequests, metricsRoutes } from './api/metrics.ts';
import { WebUi, webUiRoutes } from './api/web-ui.ts';
import type { Core } from './core.ts';

/**
 * Build the HTTP app around a started core. No port is opened here: `server.ts` listens, tests
 * use `app.inject()`. Errors anywhere become AList envelopes; a 5xx never shows its details.
 */
export async function buildApp(
  core: Core,
  options: {
    /** Told of every route as it is added (`onRoute`), before any: to list or check them. */
    onRoute?: (route: RouteOptions) => void;
  } = {},
): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: core.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 4 * 1024 * 1024,
    // Task ids and paths may be long; AList clients send odd but valid URLs.
    routerOptions: { maxParamLength: 4096, ignoreTrailingSlash: true },
  });
  if (options.onRoute) app.addHook('onRoute', options.onRoute);
  app.decorate('core', core);
  app.decorateRequest('principal', null);
  app.decorateRequest('alistFlavour', 'seed');

  // An empty body sent as `Content-Type: application/json` is no body, as AList takes it (the
  // alist3 SDK sends that header with every request, bodiless POSTs included); Fastify alone would
  // refuse it as invalid JSON. Every other body is parsed by Fastify's own parser, so malformed
  // JSON and prototype poisoning are still a 400. Registered before the routes, so every dialect
  // inherits it.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') done(null, undefined);
    else parseJson(request, text, done);
  });

  app.setErrorHandler((err, request, reply) => {
    const envelope = errorEnvelope(err);
    if (envelope.code >= 500) request.log.error({ err }, 'request failed');
    return reply.code(200).send(envelope);
  });
  // With the web UI on, a page no route serves is one of its client routes (`/@login`,
  // `/local/x`): index.html. The APIs' own paths keep the JSON 404.
  const webUi = await WebUi.load(core);
  app.setNotFoundHandler((request, reply) =>
    webUi?.isPage(request)
      ? webUi.sendPage(request, reply)
      : reply.code(404).send({
          code: 404,
          message: `no route for ${request.method} ${request.url.split('?')[0]}`,
          data: null,
        }),
  );

  // The OpenAPI document is built from the route schemas below (served at /api/docs).
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'ferry',
        version: '0.1.0',
        description:
          'Task APIs of ferry: AList (/api/task), SCNet efile (/efile/openapi/v2/file) and KooDrive (/koodrive/ose/v1/task).',
      },
    },
  });

  measureRequests(app);
  app.get('/ping', { schema: { hide: true, response: { 200: { type: 'string' } } } }, async () => 'pong');
  await app.register(metricsRoutes);
  await app.register(alistDialect, { flavour: core.config.alistCompat });
  await app.register(alistDialect, { prefix: CURRENT_PREFIX, flavour: 'current' });
  await app.register(efileRoutes);
  await app.register(koodriveRoutes);
  app.get(
    '/api/docs',
    { schema: { hide: true, response: { 200: { type: 'object', additionalProperties: true } } } },
    async () => app.swagger(),
  );
  if (webUi) await app.register(webUiRoutes, { ui: webUi });
  return app;
}
