import type { Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import type { MountRegistry } from '../storage/mounts.ts';
import { baseName, isWithin, joinPath, relativeTo } from '../storage/paths.ts';
import type { CreateTask } from '../tasks/service.ts';

/** `[mount](inner path)` as the seed's task names spell a location. */
export function bracketed(mountPath: string, inner: string): string {
  return `[${mountPath}](${inner})`;
}

export interface TransferRequest {
  kind: 'copy' | 'move';
  /** Virtual path of the item. */
  src: string;
  /** Virtual path of the destination folder. */
  dstDir: string;
  overwrite: boolean;
  skipExisting: boolean;
  keepBoth: boolean;
}

/**
 * Check one copy/move request and describe its task; every dialect submits through here.
 * `E_NOT_FOUND` for a missing source, `E_SAME_PATH` when the item would land on itself (unless
 * keeping both), `E_BAD_REQUEST` for a folder into itself. With `strict` (efile), an existing
 * destination without a conflict policy is `E_EXISTS` and a file larger than the free space is
 * `E_NO_SPACE`, before any task exists.
 */
export async function transferSpec(
  mounts: MountRegistry,
  principal: Principal,
  req: TransferRequest,
  options: { strict?: boolean } = {},
): Promise<CreateTask> {
  const src = mounts.resolve(req.src);
  const dst = mounts.resolve(req.dstDir);
  const target = joinPath(req.dstDir, baseName(req.src));
  if (src.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be copied or moved');
  if (target === req.src && !(req.keepBoth && req.kind === 'copy')) {
    throw new FerryError('E_SAME_PATH', 'source and destination are the same');
  }
  if (target !== req.src && isWithin(target, req.src))
    throw new FerryError('E_BAD_REQUEST', 'cannot copy a folder into itself');
  const entry = await src.driver.stat(src.path);
  if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${relativeTo(req.src, principal.basePath)}`);
  if (options.strict) {
    const existing = await dst.driver.stat(joinPath(dst.path, baseName(req.src)));
    if (existing && !req.overwrite && !req.keepBoth && !req.skipExisting) {
      throw new FerryError('E_EXISTS', `already exists: ${relativeTo(target, principal.basePath)}`);
    }
    const free = entry.isDir ? null : await dst.driver.freeSpace(dst.path).catch(() => null);
    if (free !== null && entry.size > free)
      throw new FerryError('E_NO_SPACE', 'not enough free space at the destination');
  }
  return {
    kind: req.kind,
    name: `${req.kind} ${bracketed(src.mountPath, src.path)} to ${bracketed(dst.mountPath, dst.path)}`,
    payload: {
      src: req.src,
      dstDir: req.dstDir,
      overwrite: req.overwrite,
      skipExisting: req.skipExisting,
      keepBoth: req.keepBoth,
    },
  };
}

/** Describe a delete task for a virtual path (the storage root itself is refused). */
export function deleteSpec(mounts: MountRegistry, path: string): CreateTask {
  const r = mounts.resolve(path);
  if (r.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be deleted');
  return { kind: 'delete', name: `delete ${bracketed(r.mountPath, r.path)}`, payload: { path } };
}

/** `Promise.all` over `items` with at most `limit` calls in flight; results keep their order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
