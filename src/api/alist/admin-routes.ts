import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TASK_KINDS, type TaskKind } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import { isSecretSetting, type Mount, type NewStorage } from '../../storage/mounts.ts';
import { adminRoutes } from './admin-route.ts';
import { driverInfo, driverNames } from './driver-info.ts';

/** A storage in AList's shape (`model.Storage`: every field AList's clients read), with secret settings blanked. */
export function storageView(m: Mount) {
  let addition: Record<string, unknown> = {};
  try {
    addition = JSON.parse(m.record.addition) as Record<string, unknown>;
  } catch {
    // stored settings are validated on write; show nothing rather than fail
  }
  for (const key of Object.keys(addition)) if (isSecretSetting(key)) addition[key] = '';
  const o = m.record.options;
  return {
    id: m.record.id,
    mount_path: m.record.mountPath,
    order: m.record.order,
    driver: m.record.driver,
    cache_expiration: o.cacheExpiration,
    custom_cache_policies: o.customCachePolicies,
    status: m.status,
    addition: JSON.stringify(addition),
    remark: m.record.remark,
    modified: new Date(m.record.modified).toISOString(),
    disabled: m.record.disabled,
    disable_index: o.disableIndex,
    enable_sign: o.enableSign,
    order_by: o.orderBy,
    order_direction: o.orderDirection,
    extract_folder: o.extractFolder,
    web_proxy: o.webProxy,
    webdav_policy: o.webdavPolicy,
    proxy_range: o.proxyRange,
    down_proxy_url: o.downProxyUrl,
    disable_proxy_sign: o.disableProxySign,
  };
}

/**
 * A storage as AList's clients send it (the OpenList form, its backups, alist-sdk). Fields ferry
 * does not know (`id`, `status`, `modified`, …) are passed over; a known field of the wrong type
 * is `E_BAD_REQUEST`; a missing or null one takes its zero value, as AList's binding does.
 */
function storageInput(body: unknown): NewStorage {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b.mount_path !== 'string') throw new FerryError('E_BAD_REQUEST', 'mount_path must be a string');
  if (typeof b.driver !== 'string') throw new FerryError('E_BAD_REQUEST', 'driver must be a string');
  const addition =
    b.addition === undefined
      ? '{}'
      : typeof b.addition === 'string'
        ? b.addition
        : JSON.stringify(b.addition);
  const field = <T extends number | string | boolean>(key: string, zero: T): T => {
    const value = b[key];
    if (value === undefined || value === null) return zero;
    const fits = typeof zero === 'number' ? Number.isInteger(value) : typeof value === typeof zero;
    if (!fits) {
      const kind =
        typeof zero === 'number' ? 'an integer' : typeof zero === 'boolean' ? 'true or false' : 'a string';
      throw new FerryError('E_BAD_REQUEST', `${key} must be ${kind}`);
    }
    return value as T;
  };
  return {
    mountPath: b.mount_path,
    driver: b.driver,
    addition,
    order: field('order', 0),
    remark: field('remark', ''),
    disabled: field('disabled', false),
    options: {
      cacheExpiration: field('cache_expiration', 0),
      customCachePolicies: field('custom_cache_policies', ''),
      webProxy: field('web_proxy', false),
      webdavPolicy: field('webdav_policy', ''),
      proxyRange: field('proxy_range', false),
      downProxyUrl: field('down_proxy_url', ''),
      disableProxySign: field('disable_proxy_sign', false),
      orderBy: field('order_by', ''),
      orderDirection: field('order_direction', ''),
      extractFolder: field('extract_folder', ''),
      disableIndex: field('disable_index', false),
      enableSign: field('enable_sign', false),
    },
  };
}

function idParam(request: FastifyRequest): number {
  const raw = (request.query as { id?: string }).id ?? (request.body as { id?: unknown } | null)?.id;
  const id = Number(raw);
  if (!Number.isInteger(id) || id <= 0)
    throw new FerryError('E_BAD_REQUEST', 'id must be a positive integer');
  return id;
}

const ID_QUERY = { type: 'object', properties: { id: { type: 'string', description: 'the storage id' } } };

/** A storage as AList's clients send it: checked field by field by `storageInput`. */
const STORAGE_BODY = {
  properties: {
    mount_path: { description: 'string' },
    driver: { description: 'string: Local, S3, SFTP, WebDav' },
    addition: { description: "the driver's settings: an object or its JSON text" },
  },
};

/** Storage management and engine settings (admins only). */
export async function alistAdminRoutes(app: FastifyInstance): Promise<void> {
  const { mounts, runner, nodes } = app.core;
  const route = adminRoutes(app, ['alist admin']);
  const idInput = { querystring: ID_QUERY, body: { properties: { id: { description: 'the storage id' } } } };

  // AList pages this list with `page` and `per_page`; without them it is whole.
  route(
    'GET',
    '/api/admin/storage/list',
    async (request) => {
      const all = mounts.all();
      const q = request.query as { page?: string; per_page?: string };
      const perPage = Math.max(0, Math.trunc(Number(q.per_page)) || 0);
      const page = Math.max(1, Math.trunc(Number(q.page)) || 1);
      const shown = perPage ? all.slice((page - 1) * perPage, page * perPage) : all;
      return { content: shown.map(storageView), total: all.length };
    },
    {
      querystring: { type: 'object', properties: { page: { type: 'string' }, per_page: { type: 'string' } } },
      reply: '`{content: [storage], total}`',
    },
  );
  route(
    'GET',
    '/api/admin/storage/get',
    async (request) => {
      const m = mounts.byId(idParam(request));
      if (!m) throw new FerryError('E_NOT_FOUND', 'storage not found');
      return storageView(m);
    },
    { ...idInput, reply: 'the storage' },
  );
  route(
    'POST',
    '/api/admin/storage/create',
    async (request) => ({ id: (await mounts.create(storageInput(request.body))).record.id }),
    { body: STORAGE_BODY, reply: '`{id}`' },
  );
  route(
    'POST',
    '/api/admin/storage/update',
    async (request) => {
      await mounts.update(idParam(request), storageInput(request.body));
      return null;
    },
    { querystring: ID_QUERY, body: STORAGE_BODY },
  );
  route(
    'POST',
    '/api/admin/storage/delete',
    async (request) => {
      await mounts.delete(idParam(request));
      return null;
    },
    idInput,
  );
  route(
    'POST',
    '/api/admin/storage/enable',
    async (request) => {
      await mounts.setDisabled(idParam(request), false);
      return null;
    },
    idInput,
  );
  route(
    'POST',
    '/api/admin/storage/disable',
    async (request) => {
      await mounts.setDisabled(idParam(request), true);
      return null;
    },
    idInput,
  );
  // AList answers at once and loads in the background; ferry answers once every storage has
  // started (or failed to), so the list right after shows each one's status.
  route('POST', '/api/admin/storage/load_all', async () => {
    await mounts.reloadAll();
    return null;
  });

  // The Add Storage form: each driver's fields in AList's driver-info shape.
  route('GET', '/api/admin/driver/list', async () =>
    Object.fromEntries(driverNames().map((name) => [name, driverInfo(name)])),
  );
  route('GET', '/api/admin/driver/names', async () => driverNames());
  route(
    'GET',
    '/api/admin/driver/info',
    async (request) => {
      const name = (request.query as { driver?: string }).driver ?? '';
      const info = driverInfo(name);
      if (!info) throw new FerryError('E_NOT_FOUND', `driver [${name}] not found`);
      return info;
    },
    {
      querystring: { type: 'object', properties: { driver: { type: 'string' } } },
      reply: "the driver's form",
    },
  );

  // The live nodes sharing the store: what each runs, its limits, when it last beat.
  route(
    'GET',
    '/api/admin/nodes',
    async () => {
      const live = await nodes.live();
      return {
        content: live.map((n) => ({
          id: n.id,
          host: n.host,
          pid: n.pid,
          start_time: new Date(n.startedAt).toISOString(),
          last_heartbeat: new Date(n.heartbeatAt).toISOString(),
          heartbeat_ago_ms: Math.max(0, Date.now() - n.heartbeatAt),
          running: n.running,
          workers: n.workers,
          this_node: n.id === nodes.id,
        })),
        total: live.length,
      };
    },
    { reply: '`{content: [node], total}`: the live nodes sharing the store' },
  );

  // Worker limits per task kind, changeable while running: {"copy": 8, "upload": 2}.
  route('GET', '/api/admin/task/workers', async () => runner.getLimits(), { reply: 'kind → workers' });
  route(
    'POST',
    '/api/admin/task/workers',
    async (request) => {
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body))
        throw new FerryError('E_BAD_REQUEST', 'body must be an object of kind → workers');
      for (const [kind, n] of Object.entries(body)) {
        if (!(TASK_KINDS as readonly string[]).includes(kind))
          throw new FerryError('E_BAD_REQUEST', `unknown task kind "${kind}"`);
        runner.setLimit(kind as TaskKind, n as number);
      }
      return runner.getLimits();
    },
    { body: { description: 'an object of kind → workers, e.g. {"copy": 8}' }, reply: 'kind → workers' },
  );
}
