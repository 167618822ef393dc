/**
 * Every HTTP route declares what it answers (a response schema) and what it takes (a body,
 * query string, params or headers schema, where it takes any). The list of routes comes from
 * Fastify itself (`onRoute`), so a route added later without schemas fails here. Also checks that a
 * schema's refusal answers in the dialect's envelope, not in Fastify's own 400 shape.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance, RouteOptions } from 'fastify';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { type Core, startCore } from '../src/core.ts';

/**
 * POST routes that read no input at all (an action on the caller's own state, or on everything):
 * they need no input schema. Any other POST or PUT must declare what it takes.
 */
const NO_INPUT = new Set([
  '/api/public/settings',
  '/api/public/archive_extensions',
  '/api/admin/storage/load_all',
]);

describe('route schemas', () => {
  let dataDir: string;
  let core: Core;
  let app: FastifyInstance;
  const routes: RouteOptions[] = [];

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-schemas-'));
    const config = await loadConfig(
      { FERRY_DATA_DIR: dataDir, FERRY_ADMIN_PASSWORD: 'route-schemas-pw' },
      {},
    );
    core = await startCore(config, pino({ level: 'silent' }), { runWorkers: false });
    app = await buildApp(core, { onRoute: (route) => routes.push(route) });
    await app.ready();
  });
  after(async () => {
    await app?.close();
    await core?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('has a response schema on every route, and an input schema on every route that takes input', () => {
    const checked = routes.filter((r) => !isWebUiFile(r));
    assert.ok(checked.length > 200, `only ${checked.length} routes seen`);
    const missing: string[] = [];
    for (const route of checked) {
      const methods = ([] as string[]).concat(route.method);
      const name = `${methods.join('|')} ${route.url}`;
      const schema = route.schema ?? {};
      if (!schema.response) missing.push(`${name}: no response schema`);
      const takesBody = methods.some((m) => m === 'POST' || m === 'PUT');
      const input = schema.body ?? schema.querystring ?? schema.headers;
      if (takesBody && !input && !NO_INPUT.has(route.url.replace(/^\/@openlist/, '')))
        missing.push(`${name}: takes input but declares none`);
      if (/[:*]/.test(route.url) && !schema.params) missing.push(`${name}: no params schema`);
    }
    assert.deepEqual(missing, []);
  });

  it('documents the routes from those schemas at /api/docs', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/docs' });
    assert.equal(res.statusCode, 200);
    const doc = res.json() as {
      paths: Record<string, Record<string, { requestBody?: unknown; responses?: object }>>;
    };
    const copy = doc.paths['/api/fs/copy']?.post;
    assert.ok(copy?.requestBody, 'fs/copy documents its body');
    assert.ok(copy?.responses && '200' in copy.responses, 'fs/copy documents its reply');
    assert.ok(doc.paths['/@openlist/api/task/events']?.get, 'the SSE route under /@openlist');
  });

  it('refuses input against a schema in the dialect envelope, naming the field', async () => {
    const token = (
      await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username: 'admin', password: 'route-schemas-pw' },
      })
    ).json().data.token as string;
    for (const prefix of ['', '/@openlist']) {
      const res = await app.inject({
        method: 'POST',
        url: `${prefix}/api/fs/copy`,
        headers: { authorization: token },
        payload: { src_dir: 42, dst_dir: '/local', names: ['a'] },
      });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { code: 400, message: 'src_dir must be a string (a path)', data: null });
      const empty = await app.inject({
        method: 'POST',
        url: `${prefix}/api/fs/remove`,
        headers: { authorization: token },
        payload: { dir: '/local', names: [] },
      });
      assert.deepEqual(empty.json(), { code: 400, message: 'names must be a non-empty array', data: null });
    }
    const efile = await app.inject({
      method: 'POST',
      url: '/efile/openapi/v2/file/async-copy',
      headers: { token },
      payload: [{ sourcePath: '/local/a' }],
    });
    assert.equal(efile.json().code, '10003');
    const koo = await app.inject({
      method: 'GET',
      url: '/koodrive/ose/v1/task/list?pageSize=1000',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(koo.json().code, '400');
  });

  it('keeps every field of a reply that a client reads (the schema strips nothing)', async () => {
    const token = (
      await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username: 'admin', password: 'route-schemas-pw' },
      })
    ).json().data.token as string;
    const list = await app.inject({
      method: 'POST',
      url: '/@openlist/api/fs/list',
      headers: { authorization: token },
      payload: { path: '/' },
    });
    const data = list.json().data;
    assert.deepEqual(Object.keys(data).sort(), ['content', 'header', 'provider', 'readme', 'total', 'write']);
    assert.ok(data.content.some((o: { name: string; is_dir: boolean }) => o.name === 'local' && o.is_dir));
    const me = await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: token } });
    assert.equal(me.json().data.username, 'admin');
    assert.equal(me.json().data.base_path, '/');
  });
});

/**
 * A route of `@fastify/static` serving the web UI's files: its answers are the files, not JSON,
 * and it takes only their path. (ferry's own routes all have a schema.)
 */
function isWebUiFile(route: RouteOptions): boolean {
  return (
    route.url.endsWith('/*') &&
    !route.schema?.response &&
    !route.url.includes('/api/') &&
    !/^(\/@openlist)?\/[dp]\/\*$/.test(route.url)
  );
}
