import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isAdmin } from '../../auth/roles.ts';
import { TASK_KINDS, type TaskKind } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import { isSecretSetting, type Mount } from '../../storage/mounts.ts';
import type { NewStorage } from '../../store/mount-store.ts';
import { principalOf } from '../context.ts';
import { ok, sendError } from './envelope.ts';

/** A storage in AList's shape, with secret settings blanked. */
export function storageView(m: Mount) {
  let addition: Record<string, unknown> = {};
  try {
    addition = JSON.parse(m.record.addition) as Record<string, unknown>;
  } catch {
    // stored settings are validated on write; show nothing rather than fail
  }
  for (const key of Object.keys(addition)) if (isSecretSetting(key)) addition[key] = '';
  return {
    id: m.record.id,
    mount_path: m.record.mountPath,
    driver: m.record.driver,
    addition: JSON.stringify(addition),
    order: m.record.order,
    remark: m.record.remark,
    disabled: m.record.disabled,
    status: m.status,
    modified: new Date(m.record.modified).toISOString(),
  };
}

async function requireAdmin(request: FastifyRequest): Promise<void> {
  const p = await principalOf(request);
  if (!isAdmin(p)) throw new FerryError('E_FORBIDDEN', 'You are not an admin');
}

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
  return {
    mountPath: b.mount_path,
    driver: b.driver,
    addition,
    order: typeof b.order === 'number' && Number.isInteger(b.order) ? b.order : 0,
    remark: typeof b.remark === 'string' ? b.remark : '',
    disabled: b.disabled === true,
  };
}

function idParam(request: FastifyRequest): number {
  const raw = (request.query as { id?: string }).id ?? (request.body as { id?: unknown } | null)?.id;
  const id = Number(raw);
  if (!Number.isInteger(id) || id <= 0)
    throw new FerryError('E_BAD_REQUEST', 'id must be a positive integer');
  return id;
}

/** Storage management and engine settings (admins only). */
export async function alistAdminRoutes(app: FastifyInstance): Promise<void> {
  const { mounts, runner } = app.core;
  const route = (method: 'GET' | 'POST', url: string, run: (request: FastifyRequest) => Promise<unknown>) =>
    app.route({
      method,
      url,
      handler: async (request, reply) => {
        try {
          await requireAdmin(request);
          return ok(await run(request));
        } catch (err) {
          return sendError(reply, err);
        }
      },
    });

  route('GET', '/api/admin/storage/list', async () => {
    const all = mounts.all();
    return { content: all.map(storageView), total: all.length };
  });
  route('GET', '/api/admin/storage/get', async (request) => {
    const m = mounts.byId(idParam(request));
    if (!m) throw new FerryError('E_NOT_FOUND', 'storage not found');
    return storageView(m);
  });
  route('POST', '/api/admin/storage/create', async (request) => ({
    id: (await mounts.create(storageInput(request.body))).record.id,
  }));
  route('POST', '/api/admin/storage/update', async (request) => {
    await mounts.update(idParam(request), storageInput(request.body));
    return null;
  });
  route('POST', '/api/admin/storage/delete', async (request) => {
    await mounts.delete(idParam(request));
    return null;
  });

  // Worker limits per task kind, changeable while running: {"copy": 8, "upload": 2}.
  route('GET', '/api/admin/task/workers', async () => runner.getLimits());
  route('POST', '/api/admin/task/workers', async (request) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new FerryError('E_BAD_REQUEST', 'body must be an object of kind → workers');
    for (const [kind, n] of Object.entries(body)) {
      if (!(TASK_KINDS as readonly string[]).includes(kind))
        throw new FerryError('E_BAD_REQUEST', `unknown task kind "${kind}"`);
      runner.setLimit(kind as TaskKind, n as number);
    }
    return runner.getLimits();
  });
}
