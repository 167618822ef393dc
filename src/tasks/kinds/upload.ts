import { link, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError, fromFsError } from '../../errors.ts';
import { parentPath, TEMP_PREFIX, tempToken } from '../../storage/paths.ts';
import { spoolPath, uploadDefinition } from '../definitions/upload.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';
import { writeLocalFile } from './ranged-fetch.ts';

/**
 * Write a spooled upload to its destination. The body was saved (and fsynced) in the data
 * directory before the client got its reply, so the task survives a restart. When the
 * destination is a local folder on the same file system, the spool file is linked into place
 * instead of copied. The payload's `modified` (ms, the upload's `Last-Modified`) becomes the
 * file's modification time where the destination's driver keeps one (`WriteOptions.modified`).
 */
export const uploadKind: TaskKindHandler = {
  kind: 'upload',
  async run(task, ctx) {
    const { dst: path, overwrite, modified } = uploadDefinition.read(task.payload);
    const dst = ctx.mounts.resolve(path);
    const spool = spoolPath(ctx.dataDir, task.id);
    const size = await stat(spool).then(
      (s) => s.size,
      () => null,
    );
    if (size === null) {
      // Resumed after the file was placed but before success was recorded.
      if (ctx.resumed && (await dst.driver.stat(dst.path))) return;
      throw new FerryError('E_NOT_FOUND', 'the uploaded data is gone from the spool');
    }
    ctx.progress.setTotals({ bytes: size, files: 1 });
    const local = dst.driver.localPath(dst.path);
    if (local) await dst.driver.mkdir(parentPath(dst.path));
    // A link shares the spool file's inode, and so its time.
    if (local && modified !== undefined) await utimes(spool, modified / 1000, modified / 1000);
    // A node that stalled past its lease places nothing over the holder's result.
    await ctx.fence();
    if (local && (await placeByLink(spool, local, { overwrite, taskId: task.id }))) {
      ctx.progress.addBytes(size);
    } else {
      await writeLocalFile(dst.driver, dst.path, spool, size, {
        signal: ctx.signal,
        overwrite,
        tempKey: task.id,
        ...(modified !== undefined && { modified }),
        onProgress: (n) => ctx.progress.addBytes(n),
      });
    }
    ctx.progress.fileDone();
  },
  succeeded: removeSpool,
  discard: removeSpool,
};

/**
 * Link the spool file into place; false when the two are on different file systems. A resumed
 * task whose link is already in place (same inode) counts as placed.
 */
async function placeByLink(
  spool: string,
  target: string,
  options: { overwrite: boolean; taskId: string },
): Promise<boolean> {
  try {
    if (options.overwrite) {
      // Keep the spool for a retry until success is recorded: link to a temp name, then rename over.
      const temp = join(dirname(target), `${TEMP_PREFIX}${tempToken(target, options.taskId)}`);
      await unlink(temp).catch(() => undefined); // left by an attempt that died here
      await link(spool, temp);
      await rename(temp, target).catch(async (err) => {
        await unlink(temp).catch(() => undefined);
        throw err;
      });
    } else {
      await link(spool, target);
    }
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK') return false;
    if (code === 'EEXIST') {
      const [a, b] = await Promise.all([stat(spool), stat(target)]);
      if (a.ino === b.ino && a.dev === b.dev) return true;
    }
    throw fromFsError(err, target);
  }
}

async function removeSpool(task: { id: string }, deps: KindDeps): Promise<void> {
  await rm(spoolPath(deps.dataDir, task.id), { force: true });
}
