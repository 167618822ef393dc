import { FerryError, isFerryError } from '../../errors.ts';
import type { Driver, Entry } from '../../storage/driver.ts';
import { baseName, joinPath } from '../../storage/paths.ts';
import { moveDefinition } from '../definitions/copy.ts';
import { copyPlanned, planCopy } from './copy.ts';
import type { TaskKindHandler } from './kind.ts';
import { isTreeRun, runTree } from './sync.ts';
import type { Endpoint } from './transfer.ts';

/**
 * Move one item into a folder. Within one mount it is the backend's rename, unless that would
 * copy a whole folder behind one call (S3: `folderRename` false). Otherwise each file is copied
 * (on the backend where it can), checked at the destination (present, same size), and only then
 * deleted at the source; emptied source folders are removed last. A crash part-way leaves every
 * file in one place or the other, and the retry carries on.
 */
export const moveKind: TaskKindHandler = {
  kind: 'move',
  async run(task, ctx) {
    // A move job's run: every file of a folder's tree into another, each source removed once copied.
    if (isTreeRun(task.payload)) return runTree(task, ctx);
    const payload = moveDefinition.read(task.payload);
    const plan = await planCopy(task, payload, ctx);
    if (!plan) {
      // Resumed after the move finished but before it was recorded: the result is in place.
      const dst = ctx.mounts.resolve(joinPath(payload.dstDir, payload.dstName ?? baseName(payload.src)));
      if (ctx.resumed && (await dst.driver.stat(dst.path))) return;
      throw new FerryError('E_NOT_FOUND', `not found: ${payload.src}`);
    }
    if (plan.src.mount === plan.dst.mount && (!plan.isDir || plan.src.driver.capabilities.folderRename)) {
      ctx.progress.setTotals({ bytes: plan.isDir ? 0 : plan.size, files: 1 });
      await ctx.fence();
      await plan.dst.driver.rename(plan.src.path, plan.dstPath, { overwrite: payload.overwrite });
      ctx.progress.addBytes(plan.isDir ? 0 : plan.size);
      ctx.progress.fileDone();
      return;
    }
    // Deleting a source is not undone: only the lease holder does it.
    await copyPlanned(plan, payload, ctx, async (src, dst, size) => {
      await ctx.fence();
      await verifyThenDeleteSource(src, dst, size);
    });
    // A link to a folder was copied as that folder, which stays: the link is what moved.
    if (plan.isDir && plan.link) await plan.src.driver.remove(plan.src.path);
    else if (plan.isDir) await removeEmptyFolders(plan.src.driver, plan.src.path, ctx.signal);
  },
};

async function verifyThenDeleteSource(src: Endpoint, dst: Endpoint, size: number): Promise<void> {
  const written = await dst.driver.stat(dst.path);
  if (!written || written.isDir || written.size !== size) {
    throw new FerryError('E_VERIFY_FAILED', `destination check failed for ${dst.path}; source kept`);
  }
  await src.driver.remove(src.path, { file: true });
}

/**
 * Remove `root` and folders below it that are empty, deepest first; anything with files stays. A
 * folder already gone counts as removed: on S3 a folder without a marker object is only a prefix,
 * gone with the last file moved out of it.
 */
async function removeEmptyFolders(driver: Driver, root: string, signal: AbortSignal): Promise<boolean> {
  signal.throwIfAborted();
  let entries: Entry[];
  try {
    entries = await driver.list(root);
  } catch (err) {
    if (isFerryError(err, 'E_NOT_FOUND')) return true;
    throw err;
  }
  let empty = true;
  for (const entry of entries) {
    const path = joinPath(root, entry.name);
    // A link to a folder was copied as the folder it leads to, whose files stay where they are
    // (see copyPlanned): the link itself is what moved.
    if (entry.isDir && entry.link) await driver.remove(path);
    else if (!entry.isDir || !(await removeEmptyFolders(driver, path, signal))) empty = false;
  }
  if (empty) await driver.remove(root);
  return empty;
}
