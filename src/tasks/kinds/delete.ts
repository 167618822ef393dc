import { FerryError } from '../../errors.ts';
import type { Driver, Entry } from '../../storage/driver.ts';
import { joinPath } from '../../storage/paths.ts';
import { deleteDefinition } from '../definitions/delete.ts';
import type { TaskContext, TaskKindHandler } from './kind.ts';
import { forEachLimit, ItemFailures, items, measureTree } from './transfer.ts';

/** Files removed at once: a remote backend answers each removal after a round trip. */
const REMOVE_CONCURRENCY = 8;

/**
 * Delete a file or a whole tree as one task: counts files first, then removes them with the
 * driver's `removeTree` where it has one (S3), else deepest first, several at a time, checking for
 * cancel between requests, so a canceled delete stops at once and reports how far it got. A link
 * in the tree is removed as a file, never gone through.
 */
export const deleteKind: TaskKindHandler = {
  kind: 'delete',
  async run(task, ctx) {
    const { path } = deleteDefinition.read(task.payload);
    const target = ctx.mounts.resolve(path);
    if (target.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be deleted');
    const entry = await target.driver.stat(target.path);
    if (!entry) {
      if (ctx.resumed) return; // deleted before the crash
      throw new FerryError('E_NOT_FOUND', `not found: ${path}`);
    }
    // A link (to a folder too) is removed itself, never gone through.
    if (!entry.isDir || entry.link) {
      const bytes = entry.link ? 0 : entry.size;
      ctx.progress.setTotals({ files: 1, bytes });
      await target.driver.remove(target.path, { file: !entry.isDir, signal: ctx.signal });
      ctx.progress.addBytes(bytes);
      ctx.progress.fileDone();
      return;
    }
    const totals = await measureTree(target.driver, target.path, ctx.signal, { linksAsFiles: true });
    ctx.progress.setTotals({ files: totals.files, bytes: totals.bytes });
    const failures = new ItemFailures(ctx.progress, ctx.signal);
    if (target.driver.removeTree) {
      // Paths relative to the folder, as the walk below reports them.
      const rel = (path: string) => path.slice(target.path.length);
      await target.driver.removeTree(target.path, {
        signal: ctx.signal,
        removed: (file) => {
          ctx.progress.addBytes(file.size);
          ctx.progress.fileDone();
        },
        failed: (path, err) => failures.add(rel(path), err),
      });
    } else {
      await removeByWalk(target.driver, target.path, '/', ctx, failures.add);
    }
    failures.throwIfAny((count) => `${items(count)} could not be deleted`);
  },
};

/**
 * Remove what is below `root` + `rel`, then that folder. An item that cannot be listed or removed
 * goes to `failed` (with its path relative to `root`, as a copy lists its failures) and the rest
 * goes on; a folder that keeps something it could not remove stays. Returns whether the folder
 * was removed.
 */
async function removeByWalk(
  driver: Driver,
  root: string,
  rel: string,
  ctx: TaskContext,
  failed: (rel: string, err: unknown) => void,
): Promise<boolean> {
  const dir = joinPath(root, rel);
  let entries: Entry[];
  try {
    entries = await driver.list(dir);
  } catch (err) {
    failed(rel, err);
    return false;
  }
  let emptied = true;
  // Folders one after another (each removes its files several at a time): what is in flight at
  // once stays within REMOVE_CONCURRENCY however deep the tree.
  for (const entry of entries) {
    if (!entry.isDir || entry.link) continue;
    ctx.signal.throwIfAborted();
    if (!(await removeByWalk(driver, root, joinPath(rel, entry.name), ctx, failed))) emptied = false;
  }
  // A followed link is removed itself (as a file): going through it would delete what it leads to.
  const files = entries.filter((entry) => !entry.isDir || entry.link);
  await forEachLimit(files, REMOVE_CONCURRENCY, ctx.signal, async (entry) => {
    const childRel = joinPath(rel, entry.name);
    try {
      await driver.remove(joinPath(root, childRel), { file: !entry.isDir, signal: ctx.signal });
    } catch (err) {
      failed(childRel, err);
      emptied = false;
      return;
    }
    ctx.progress.addBytes(entry.link ? 0 : entry.size);
    ctx.progress.fileDone();
  });
  if (!emptied) return false;
  try {
    await driver.remove(dir);
  } catch (err) {
    failed(rel, err);
    return false;
  }
  return true;
}
