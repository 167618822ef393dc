import type { FastifyInstance, FastifyRequest } from 'fastify';
import { can, type Permission, type Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import type { Entry } from '../storage/driver.ts';
import { baseName, checkName, joinPath, normalizePath, parentPath, relativeTo } from '../storage/paths.ts';
import type { Task } from '../tasks/model.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';
import { deleteSpec, mapLimit, transferSpec } from './task-specs.ts';
import { spoolUploads } from './upload.ts';

/** Most names one copy/move/remove request takes. */
const MAX_NAMES = 1000;
/** How long `fs/remove` waits for its delete tasks before answering with the tasks instead. */
const REMOVE_WAIT_MS = 10_000;

/** A user's path (relative to their base path) as a virtual path, refusing traversal. */
export function toVirtual(principal: Principal, userPath: unknown): string {
  return joinPath(principal.basePath, normalizePath(userPath));
}

function require(principal: Principal, permission: Permission): void {
  if (!can(principal, permission))
    throw new FerryError('E_FORBIDDEN', `permission denied: ${permission.toLowerCase()}`);
}

function body(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw new FerryError('E_BAD_REQUEST', 'body must be a JSON object');
  return b as Record<string, unknown>;
}

function names(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new FerryError('E_BAD_REQUEST', 'names must be a non-empty array');
  if (value.length > MAX_NAMES) throw new FerryError('E_BAD_REQUEST', `at most ${MAX_NAMES} names at once`);
  return value.map(checkName);
}

function entryView(e: Entry) {
  return {
    name: e.name,
    size: e.size,
    is_dir: e.isDir,
    modified: new Date(e.modified).toISOString(),
    created: new Date(e.modified).toISOString(),
    sign: '',
    thumb: '',
    type: e.isDir ? 1 : 0,
    hashinfo: 'null',
  };
}

/**
 * AList's file API. Reads answer directly; copy, move, remove and uploads become tasks.
 * Every path is the caller's (below their base path), normalised, and refused when it tries to
 * climb out.
 */
export async function fsRoutes(app: FastifyInstance): Promise<void> {
  const { mounts, tasks } = app.core;
  const route = (url: string, run: (request: FastifyRequest, principal: Principal) => Promise<unknown>) =>
    app.post(url, async (request, reply) => {
      try {
        const principal = await principalOf(request);
        return ok(await run(request, principal));
      } catch (err) {
        return sendError(reply, err);
      }
    });

  route('/api/fs/list', async (request, principal) => {
    const b = body(request);
    const path = toVirtual(principal, b.path ?? '/');
    const content: ReturnType<typeof entryView>[] = [];
    let provider = 'unknown';
    let found = false;
    const virtual = mounts.virtualChildren(path);
    for (const name of virtual)
      content.push(entryView({ name, path: '', isDir: true, size: 0, modified: 0 }));
    try {
      const r = mounts.resolve(path);
      provider = r.mount.record.driver;
      for (const e of await r.driver.list(r.path)) if (!virtual.includes(e.name)) content.push(entryView(e));
      found = true;
    } catch (err) {
      if (!(err instanceof FerryError && err.code === 'E_NO_STORAGE' && virtual.length > 0)) throw err;
      found = virtual.length > 0;
    }
    if (!found) throw new FerryError('E_NOT_FOUND', 'object not found');
    const perPage = Math.max(0, Number(b.per_page) || 0);
    const page = Math.max(1, Number(b.page) || 1);
    const slice = perPage ? content.slice((page - 1) * perPage, page * perPage) : content;
    return {
      content: slice,
      total: content.length,
      readme: '',
      header: '',
      write: can(principal, 'WRITE'),
      provider,
    };
  });

  route('/api/fs/get', async (request, principal) => {
    const path = toVirtual(principal, body(request).path ?? '/');
    const r = mounts.resolve(path);
    const entry = await r.driver.stat(r.path);
    if (!entry) throw new FerryError('E_NOT_FOUND', 'object not found');
    const userPath = relativeTo(path, principal.basePath);
    const origin = `${request.protocol}://${request.headers.host ?? 'localhost'}`;
    return {
      ...entryView({ ...entry, name: baseName(path) || entry.name }),
      raw_url: entry.isDir ? '' : `${origin}/d${encodeURI(userPath)}`,
      readme: '',
      provider: r.mount.record.driver,
      related: null,
    };
  });

  route('/api/fs/mkdir', async (request, principal) => {
    require(principal, 'WRITE');
    const r = mounts.resolve(toVirtual(principal, body(request).path));
    await r.driver.mkdir(r.path);
    return null;
  });

  route('/api/fs/rename', async (request, principal) => {
    require(principal, 'RENAME');
    const b = body(request);
    const r = mounts.resolve(toVirtual(principal, b.path));
    if (r.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be renamed');
    await r.driver.rename(r.path, joinPath(parentPath(r.path), checkName(b.name)));
    return null;
  });

  route('/api/fs/remove', async (request, principal) => {
    require(principal, 'REMOVE');
    const b = body(request);
    const dir = toVirtual(principal, b.dir);
    const specs = names(b.names).map((name) => deleteSpec(mounts, joinPath(dir, name)));
    const created = await tasks.create(principal, specs);
    const finished = await tasks.waitFinished(
      created.map((t) => t.id),
      REMOVE_WAIT_MS,
    );
    const failed = finished.find((t) => t.state === 'failed');
    if (failed) throw new FerryError('E_BAD_REQUEST', failed.error || 'delete failed');
    return { tasks: finished.map((t) => alistTask(t, flavourOf(request))) };
  });

  const transfer = (kind: 'copy' | 'move') => async (request: FastifyRequest, principal: Principal) => {
    require(principal, kind === 'copy' ? 'COPY' : 'MOVE');
    const b = body(request);
    const srcDir = toVirtual(principal, b.src_dir);
    const dstDir = toVirtual(principal, b.dst_dir);
    const items = names(b.names);
    const dst = mounts.resolve(dstDir);
    const dstEntry = await dst.driver.stat(dst.path);
    if (dstEntry && !dstEntry.isDir) throw new FerryError('E_NOT_A_DIRECTORY', 'dst_dir is not a folder');
    // Check every source exists before creating any task, a few at a time.
    const specs = await mapLimit(items, 16, (name) =>
      transferSpec(mounts, principal, {
        kind,
        src: joinPath(srcDir, name),
        dstDir,
        overwrite: b.overwrite === true,
        skipExisting: b.skip_existing === true,
        keepBoth: false,
      }),
    );
    const created: Task[] = await tasks.create(principal, specs);
    return { tasks: created.map((t) => alistTask(t, flavourOf(request))) };
  };
  route('/api/fs/copy', transfer('copy'));
  route('/api/fs/move', transfer('move'));

  await app.register(spoolUploads);
}
