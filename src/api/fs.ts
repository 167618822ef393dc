import type { FastifyInstance, FastifyRequest } from 'fastify';
import { can, type Permission, type Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import { toVirtual } from '../files/user-path.ts';
import { checkName, joinPath, parentPath } from '../storage/paths.ts';
import type { Task } from '../tasks/model.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';
import { fsReadRoutes } from './fs-read.ts';
import { deleteSpec, mapLimit, transferSpec } from './task-specs.ts';
import { spoolUploads } from './upload.ts';

/** Most names one copy/move/remove request takes. */
const MAX_NAMES = 1000;
/** How long `fs/remove` waits for its delete tasks before answering with the tasks instead. */
const REMOVE_WAIT_MS = 10_000;

// Re-exported: the upload, offline and efile routes import it from here.
export { toVirtual };

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

/**
 * AList's file API. Reads answer directly (`fs-read.ts`); copy, move, remove and uploads become tasks.
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

  await app.register(fsReadRoutes);
  await app.register(spoolUploads);
}
