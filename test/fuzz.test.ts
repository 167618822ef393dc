import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CURRENT_PREFIX } from '../src/api/alist/flavour.ts';
import { ADMIN_PASSWORD, type Harness, startHarness } from './helpers/harness.ts';

/**
 * Every route the server has, found by asking Fastify (so a new route is covered without a
 * change here), called with bodies, query strings, path parameters and headers of the wrong
 * shape, as each kind of caller. Whatever the input, the answer is an error in the route's
 * envelope or a refused download, never a 5xx, and the server keeps serving. The inputs come
 * from a seeded generator: a failure names its request and happens again on the next run.
 */

/** Fields any of the dialects reads, plus some no route knows. */
const FIELDS = [
  'path',
  'paths',
  'names',
  'name',
  'src_dir',
  'dst_dir',
  'dir',
  'tid',
  'tids',
  'id',
  'ids',
  'page',
  'per_page',
  'username',
  'password',
  'role',
  'permission',
  'url',
  'urls',
  'tool',
  'mount_path',
  'driver',
  'addition',
  'archive_pass',
  'inner_path',
  'overwrite',
  'skip_existing',
  'new_name',
  'base_path',
  'disabled',
  'order',
  'remark',
  'cursor',
  'state',
  'creator',
  'limit',
  'workers',
  'kind',
  'put_into_new_dir',
  'cache_full',
  'delete_policy',
  'taskIds',
  'taskId',
  'type',
  'fileId',
  'status',
  'pageNum',
  'pageSize',
  'start',
  'size',
  'sort',
  'unknown_field',
];
const VALUES: unknown[] = [
  null,
  0,
  1,
  -1,
  2 ** 53,
  1.5,
  1e308,
  '',
  'x',
  '1',
  '-1',
  'NaN',
  '0x10',
  '1e9',
  '/',
  '/local',
  '../..',
  '/local/../..',
  '%2e%2e',
  'a\u0000b',
  'x'.repeat(70_000),
  [],
  [null],
  [1],
  ['a', 'b'],
  ['../x'],
  [{}],
  [[]],
  {},
  { a: 1 },
  true,
  false,
  '{',
  '{"root_folder_path":"../"}',
  'Local',
  'S3',
];
const TYPES = ['copy', 'upload', 'move', 'delete', 'decompress', 'offline_download', 'x', '..', '%2e%2e'];
/** Paths for the `/d/*` route: downloads (of a file that exists too), and unknown pages. */
const WILDCARD = [
  '/d/local/file.txt',
  '/p/local/file.txt',
  '/d/local/missing',
  '/d/local',
  '/d/',
  '/d/..%2f..',
  '/d/%2e%2e/etc/passwd',
  '/d/local/file.txt%2f..%2f..',
  '/d/local/%00',
  '/nowhere',
];
const RANGES = [
  'bytes=abc',
  'bytes=5-2',
  'bytes=-0',
  'bytes=0-0,1-1',
  'bytes=99999999999999999999-',
  'bytes=-99999',
  'items=0-1',
];
const REQUESTS_PER_ROUTE = 100;

/**
 * A well-formed request per route (body and query), which the fuzzing bends one or two fields at
 * a time: random fields alone rarely get past a route's first check.
 */
const TEMPLATES: Record<string, { body?: unknown; query?: Record<string, string> }> = {
  '/api/auth/login': { body: { username: 'fuzzed', password: 'fuzzed-pw' } },
  '/api/auth/login/hash': {
    body: {
      username: 'fuzzed',
      password: 'd6e2f4c2a4b1f0e1c1a5b1e3d2c4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0',
      otp_code: '',
    },
  },
  '/api/admin/user/get': { query: { id: '2' } },
  '/api/admin/user/list': { query: { page: '1', per_page: '10' } },
  '/api/admin/user/sshkey/list': { query: { uid: '2' } },
  '/api/admin/user/create': {
    body: { username: 'u1', password: 'p', role: 0, permission: 0xfc, base_path: '/', disabled: false },
  },
  '/api/admin/user/update': {
    body: { id: 2, username: 'fuzzed', role: 0, permission: 0xfc, base_path: '/' },
  },
  '/api/admin/user/delete': { query: { id: '3' } },
  '/api/admin/user/del_cache': { query: { username: 'admin' } },
  '/api/admin/storage/get': { query: { id: '1' } },
  '/api/admin/storage/create': {
    body: { mount_path: '/m1', driver: 'Local', addition: '{"root_folder_path":"m1"}', order: 0, remark: '' },
  },
  '/api/admin/storage/update': {
    body: { id: 1, mount_path: '/local', driver: 'Local', addition: '{"root_folder_path":"files"}' },
  },
  '/api/admin/storage/delete': { query: { id: '2' } },
  '/api/admin/storage/disable': { query: { id: '1' } },
  '/api/admin/storage/enable': { query: { id: '1' } },
  '/api/admin/driver/info': { query: { driver: 'Local' } },
  '/api/admin/task/workers': { body: { copy: 4 } },
  '/api/task/:type/:action': {
    body: ['a', 'b'],
    query: { tid: 'a', page: '1', per_page: '10', state: 'succeeded' },
  },
  '/api/fs/list': { body: { path: '/local', password: '', page: 1, per_page: 10, refresh: false } },
  '/api/fs/get': { body: { path: '/local/file.txt', password: '' } },
  '/api/fs/mkdir': { body: { path: '/local/made' } },
  '/api/fs/rename': { body: { path: '/local/made', name: 'renamed' } },
  '/api/fs/remove': { body: { dir: '/local', names: ['renamed'] } },
  '/api/fs/copy': {
    body: {
      src_dir: '/local',
      dst_dir: '/local/out',
      names: ['file.txt'],
      overwrite: false,
      skip_existing: true,
    },
  },
  '/api/fs/move': { body: { src_dir: '/local/out', dst_dir: '/local/moved', names: ['file.txt'] } },
  '/api/fs/add_offline_download': {
    body: {
      urls: ['http://127.0.0.1:9/x'],
      path: '/local',
      tool: 'SimpleHttp',
      delete_policy: 'delete_on_upload_succeed',
    },
  },
  '/api/fs/archive/meta': { body: { path: '/local/file.txt', archive_pass: '' } },
  '/api/fs/archive/list': {
    body: { path: '/local/file.txt', archive_pass: '', inner_path: '/', page: 1, per_page: 10 },
  },
  '/api/fs/archive/decompress': {
    body: {
      src_dir: '/local',
      dst_dir: '/local/x',
      name: ['file.txt'],
      archive_pass: '',
      inner_path: '/',
      put_into_new_dir: false,
    },
  },
  '/efile/openapi/v2/file/async-copy': { body: [{ sourcePath: '/local/file.txt', targetPath: '/local/e' }] },
  '/efile/openapi/v2/file/async-move': {
    body: [{ sourcePath: '/local/e/file.txt', targetPath: '/local/f' }],
  },
  '/efile/openapi/v2/file/async-remove': { body: [{ sourcePath: '/local/f' }] },
  '/efile/openapi/v2/file/task/list': { body: { taskIds: ['a'] } },
  '/efile/openapi/v2/file/task/cancel': { body: { taskIds: ['a'] } },
  '/koodrive/ose/v1/task/list': { query: { taskType: '1', status: '0', pageSize: '10', pageCursor: '1' } },
};
const ACTIONS = [
  'info',
  'done',
  'undone',
  'delete',
  'cancel',
  'retry',
  'clear_done',
  'clear_succeeded',
  'retry_failed',
  'delete_some',
  'cancel_some',
  'retry_some',
  'nope',
];

/** mulberry32: a small seeded generator, so every run sends the same requests. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The routes Fastify prints, one per method (HEAD answers as GET does). The AList routes under
 * `CURRENT_PREFIX` are the same handlers as those at the root, only rendering some fields in
 * today's AList form, so they are left out here to keep this test's time.
 *
 * `printRoutes()` draws the router's radix tree: each line's text continues its parent's path
 * (one level per four characters of indentation), and lines with methods are routes.
 */
function routesOf(h: Harness): { method: 'GET' | 'POST' | 'PUT'; url: string }[] {
  const routes: { method: 'GET' | 'POST' | 'PUT'; url: string }[] = [];
  const paths: string[] = [];
  for (const line of h.app.printRoutes().split('\n')) {
    const m = line.match(/^(.*?)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/);
    if (!m || m[1] === undefined || m[2] === undefined) continue;
    const depth = [...m[1]].length / 4;
    const url = (paths[depth - 1] ?? '') + m[2];
    paths[depth] = url;
    paths.length = depth + 1;
    if (!m[3] || url.startsWith(CURRENT_PREFIX)) continue;
    for (const method of m[3].split(', '))
      if (method === 'GET' || method === 'POST' || method === 'PUT') routes.push({ method, url });
  }
  return routes;
}

describe('every route under malformed input', () => {
  let h: Harness;
  let userToken: string;

  before(async () => {
    h = await startHarness();
    userToken = await h.user('fuzzed');
    await writeFile(join(h.dataDir, 'files', 'file.txt'), 'hello world');
  });
  after(async () => {
    await h?.close();
  });

  it('answers wrong shapes, types and paths with an error in its envelope, never a 5xx', async () => {
    const random = seeded(20261130);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const randomFields = () => {
      const fields: Record<string, unknown> = {};
      for (let n = Math.floor(random() * 5); n > 0; n--) fields[pick(FIELDS)] = pick(VALUES);
      return fields;
    };
    /** The template with one or two fields (of it or of its first element) replaced or dropped. */
    const bend = (template: unknown): unknown => {
      const copy = structuredClone(template);
      const target = (Array.isArray(copy) ? copy[0] : copy) as Record<string, unknown> | undefined;
      if (target === null || typeof target !== 'object') return pick(VALUES);
      const keys = Object.keys(target);
      for (let n = 1 + Math.floor(random() * 2); n > 0; n--) {
        const key = keys.length > 0 && random() < 0.85 ? pick(keys) : pick(FIELDS);
        if (random() < 0.15) delete target[key];
        else target[key] = pick(VALUES);
      }
      return copy;
    };
    const routes = routesOf(h);
    // The API's own surfaces must all be there, or this test covers less than it says.
    for (const url of [...Object.keys(TEMPLATES), '/api/fs/put', '/d/*'])
      assert.ok(
        routes.some((r) => r.url === url),
        `route ${url} not found`,
      );
    const failures: string[] = [];
    let sent = 0;
    const send = async (
      route: { method: 'GET' | 'POST' | 'PUT'; url: string },
      path: string,
      query: URLSearchParams,
      body: unknown,
      token: string | null,
      headers: Record<string, string> = {},
    ) => {
      const url = query.size > 0 ? `${path}?${query}` : path;
      const res = await h.call(route.method, url, {
        token,
        headers,
        ...(route.method === 'PUT' ? { body: 'hello' } : route.method === 'POST' && { body }),
      });
      sent++;
      const what = `${route.method} ${url.slice(0, 160)} ${String(JSON.stringify(body)).slice(0, 160)}`;
      if (res.statusCode >= 500) failures.push(`HTTP ${res.statusCode}: ${what} → ${res.body.slice(0, 200)}`);
      if (res.headers['content-type'] === 'application/octet-stream' || path === '/ping') return;
      // Prometheus' text format, not an envelope; test/metrics.test.ts parses it.
      if (path === '/metrics' && String(res.headers['content-type']).startsWith('text/plain')) return;
      // The web UI's pages (index.html for any client route) and its logo are not envelopes.
      if (!path.startsWith('/api/') && /^(text\/html|image\/)/.test(String(res.headers['content-type'])))
        return;
      let code: unknown;
      try {
        code = (JSON.parse(res.body) as { code?: unknown }).code;
      } catch {
        failures.push(`not JSON: ${what} → ${res.body.slice(0, 200)}`);
        return;
      }
      // AList and KooDrive codes are HTTP-like numbers; efile's are strings of its own.
      if (typeof code === 'number' && code >= 500 && code < 600)
        failures.push(`code ${code}: ${what} → ${res.body.slice(0, 200)}`);
    };
    const fillPath = (url: string) =>
      url === '/d/*'
        ? pick(WILDCARD)
        : url
            .replace('*', () =>
              pick(['x', 'index.html', '%2e%2e/%2e%2e/package.json', '..%2f..%2fpackage.json']),
            )
            .replace(':type', () => pick(TYPES))
            .replace(':action', () => pick(ACTIONS))
            .replace(/:\w+/g, () => pick(['1', 'x', '..', '%2e%2e']));

    // Every field of every template, alone, set to every value (or left out), as the admin.
    for (const route of routes) {
      const template = TEMPLATES[route.url];
      if (!template) continue;
      const body = (Array.isArray(template.body) ? template.body[0] : template.body) as Record<
        string,
        unknown
      >;
      const fields = [
        ...Object.keys(typeof body === 'object' && body !== null ? body : {}).map(
          (k) => ['body', k] as const,
        ),
        ...Object.keys(template.query ?? {}).map((k) => ['query', k] as const),
      ];
      for (const [where, key] of fields)
        for (const value of [undefined, ...VALUES]) {
          const query = new URLSearchParams(template.query);
          let sentBody = template.body;
          if (where === 'query') {
            if (value === undefined) query.delete(key);
            else query.set(key, String(value).slice(0, 200));
          } else {
            const bent = { ...body, [key]: value };
            if (value === undefined) delete bent[key];
            sentBody = Array.isArray(template.body) ? [bent] : bent;
          }
          await send(route, fillPath(route.url), query, sentBody, h.adminToken);
        }
    }

    // Then random requests: templates with fields bent, or random fields, by every kind of caller.
    for (const route of routes) {
      if (route.url === '/api/task/events') continue; // a stream that stays open
      for (let i = 0; i < REQUESTS_PER_ROUTE; i++) {
        const template = TEMPLATES[route.url] ?? {};
        const bent = random() < 0.8;
        let body: unknown = bent ? bend(template.body ?? {}) : randomFields();
        if (random() < 0.05) body = pick<unknown>([[], 'text', 5, null, [body]]);
        const query = new URLSearchParams(bent ? template.query : {});
        for (let n = Math.floor(random() * 3); n > 0; n--) {
          const key = random() < 0.5 && template.query ? pick(Object.keys(template.query)) : pick(FIELDS);
          query.set(key, String(pick(VALUES)).slice(0, 200));
        }
        const headers: Record<string, string> = {};
        if (random() < 0.3) headers.range = pick(RANGES);
        if (route.method === 'PUT') {
          headers['file-path'] = encodeURIComponent(String(pick(VALUES)).slice(0, 300));
          if (random() < 0.5) headers['as-task'] = 'true';
        }
        let token = pick([h.adminToken, h.adminToken, userToken, userToken, null, 'not-a-token']);
        // A logout would end the session every later request of this test rides on: log out a
        // session of its own instead.
        if (route.url === '/api/auth/logout' && token !== null && token !== 'not-a-token')
          token = await h.login('admin', ADMIN_PASSWORD);
        await send(route, fillPath(route.url), query, body, token, headers);
      }
    }
    console.log(`# ${sent} requests over ${routes.length} routes`);
    assert.deepEqual(failures.slice(0, 20), []);
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });
});
