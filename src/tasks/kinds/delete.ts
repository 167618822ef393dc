import { FerryError } from '../../errors.ts';
import type { Driver } from '../../storage/driver.ts';
import { joinPath, normalizePath } from '../../storage/paths.ts';
import type { TaskContext, TaskKindHandler } from './kind.ts';
import { measureTree } from './transfer.ts';

/**
 * Delete a file or a whole tree as one task: counts files first, then removes them deepest
 * first, checking for cancel between files, so a canceled delete stops at once and reports how
 * far it got. A link in the tree is removed as a file, never gone through.
 */
export const deleteKind: TaskKindHandler = {
  kind: 'delete',
  async run(task, ctx) {
    const target = ctx.mounts.resolve(normalizePath(task.payload.path));
    if (target.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be deleted');
    const entry = await target.driver.stat(target.path);
    if (!entry) {
      if (ctx.resumed) return; // deleted before the crash
      throw new FerryError('E_NOT_FOUND', `not found: ${task.payload.path}`);
    }
    // A link (to a folder too) is removed itself, never gone through.
    if (!entry.isDir || entry.link) {
      const bytes = entry.link ? 0 : entry.size;
      ctx.progress.setTotals({ files: 1, bytes });
      await target.driver.remove(target.path);
      ctx.progress.addBytes(bytes);
      ctx.progress.fileDone();
      return;
    }
    const totals = await measureTree(target.driver, target.path, ctx.signal, { linksAsFiles: true });
    ctx.progress.setTotals({ files: totals.files, bytes: totals.bytes });
    await removeTree(target.driver, target.path, ctx);
  },
};

async function removeTree(driver: Driver, dir: string, ctx: TaskContext): Promise<void> {
  for (const entry of await driver.list(dir)) {
    ctx.signal.throwIfAborted();
    const path = joinPath(dir, entry.name);
    // A followed link is removed itself: going through it would delete what it leads to.
    if (entry.isDir && !entry.link) {
      await removeTree(driver, path, ctx);
    } else {
      await driver.remove(path);
      ctx.progress.addBytes(entry.link ? 0 : entry.size);
      ctx.progress.fileDone();
    }
  }
  await driver.remove(dir);
}
