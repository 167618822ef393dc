import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Core } from '../core.ts';
import { FERRY_LOGO_PATH } from '../settings/setting-catalogue.ts';
import { errorEnvelope } from './alist/envelope.ts';
import { FERRY_LOGO_SVG, findWebUi, manifest, renderIndex, type WebUiFiles } from './web-ui-page.ts';

/**
 * First path segments that are never a page of the UI: the APIs, downloads and the UI's own
 * files. A GET there that no route answers is the JSON 404, not `index.html`.
 */
const NOT_PAGES = new Set([
  'api',
  'd',
  'p',
  'efile',
  'koodrive',
  '@openlist',
  'assets',
  'images',
  'static',
  'streamer',
]);

/**
 * The folders of the frontend's `dist/` the UI loads, as OpenList serves them. Files under
 * `assets/` have content hashes in their names, so they never change: cached for a year. The
 * others keep their names across versions: a day.
 */
const FOLDERS: readonly { name: string; immutable: boolean }[] = [
  { name: 'assets', immutable: true },
  { name: 'images', immutable: false },
  { name: 'static', immutable: false },
  { name: 'streamer', immutable: false },
];

/**
 * The OpenList web UI, served at `/` as OpenList serves it: its files, `index.html` (filled in
 * from the settings, re-rendered when they change) for `/` and for every client route, and a
 * generated `/manifest.json`.
 */
export class WebUi {
  private rendered = { revision: -1, page: '', manage: '' };

  private constructor(
    readonly files: WebUiFiles,
    private readonly core: Core,
  ) {}

  /**
   * The UI when `config.webUi` is on and its files are installed; null otherwise (a warning says
   * how to install them). ferry then serves the APIs only.
   */
  static async load(core: Core): Promise<WebUi | null> {
    if (!core.config.webUi) return null;
    const files = await findWebUi();
    if (!files) {
      core.log.warn(
        'web UI files not found (node_modules/.cache/ferry-web-ui): run "npm install", or set FERRY_WEB_UI=false',
      );
      return null;
    }
    const ui = new WebUi(files, core);
    const { missing } = renderIndex(files.rawIndex, core.settings.snapshot(), { manage: false });
    if (missing.length > 0)
      core.log.warn({ missing, version: files.version }, 'web UI index.html lacks placeholders ferry fills');
    return ui;
  }

  /** Whether `request` asks for a page of the UI: a GET or HEAD outside the APIs and files. */
  isPage(request: FastifyRequest): boolean {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const path = request.url.split('?')[0] ?? '';
    return !NOT_PAGES.has(path.split('/')[1] ?? '');
  }

  /** Answer with `index.html` (never cached: it carries the settings). */
  sendPage(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const snapshot = this.core.settings.snapshot();
    if (this.rendered.revision !== snapshot.revision) {
      this.rendered = {
        revision: snapshot.revision,
        page: renderIndex(this.files.rawIndex, snapshot, { manage: false }).html,
        manage: renderIndex(this.files.rawIndex, snapshot, { manage: true }).html,
      };
    }
    const path = request.url.split('?')[0] ?? '';
    const manage = path === '/@manage' || path.startsWith('/@manage/');
    return reply
      .code(200)
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(manage ? this.rendered.manage : this.rendered.page);
  }
}

/** The UI's routes; client routes reach `index.html` through the app's not-found handler. */
export async function webUiRoutes(app: FastifyInstance, options: { ui: WebUi }): Promise<void> {
  const { ui } = options;
  // A refused file (a path climbing out of its folder) keeps its HTTP status, as downloads do:
  // browsers and caches look at it, not at the envelope's code.
  app.setErrorHandler((err, request, reply) => {
    const envelope = errorEnvelope(err);
    if (envelope.code >= 500) request.log.error({ err }, 'web UI file failed');
    return reply.code(envelope.code >= 400 && envelope.code < 500 ? envelope.code : 500).send(envelope);
  });
  for (const folder of FOLDERS) {
    await app.register(fastifyStatic, {
      root: join(ui.files.dist, folder.name),
      prefix: `/${folder.name}/`,
      decorateReply: false,
      index: false,
      maxAge: folder.immutable ? '365d' : '1d',
      immutable: folder.immutable,
    });
  }
  const page = { hide: true, response: { 200: { type: 'string', description: 'the web UI (HTML)' } } };
  app.get('/', { schema: page }, (request, reply) => ui.sendPage(request, reply));
  const manifestSchema = {
    hide: true,
    response: { 200: { type: 'object', additionalProperties: true, description: 'the web app manifest' } },
  };
  app.get('/manifest.json', { schema: manifestSchema }, async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=3600').send(manifest(app.core.settings.snapshot())),
  );
  const logo = { hide: true, response: { 200: { type: 'string', description: 'SVG' } } };
  app.get(FERRY_LOGO_PATH, { schema: logo }, async (_request, reply) =>
    reply.type('image/svg+xml').header('cache-control', 'public, max-age=86400').send(FERRY_LOGO_SVG),
  );
}
