import { join } from 'node:path';
import { FerryError } from '../../errors.ts';
import { DataArea } from '../../storage/data-area.ts';
import { normalizePath } from '../../storage/paths.ts';
import { copyBetween, linkInto } from '../../storage/transfer.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';

/** Where an upload's body waits, in the data directory, until its task writes it to storage. */
export function spoolPath(dataDir: string, taskId: string): string {
  if (!/^[\w-]+$/.test(taskId)) throw new FerryError('E_BAD_REQUEST', 'bad task id');
  return join(dataDir, 'spool', taskId);
}

/**
 * Write a spooled upload to its destination. The body was saved (and fsynced) in the data
 * directory before the client got its reply, so the task survives a restart. When the
 * destination is a local folder on the same file system, the spool file is linked into place
 * instead of copied (`linkInto`). The payload's `modified` (ms, the upload's `Last-Modified`)
 * becomes the file's modification time where the destination's driver keeps one
 * (`WriteOptions.modified`).
 */
export const uploadKind: TaskKindHandler = {
  kind: 'upload',
  async run(task, ctx) {
    const dst = ctx.mounts.resolve(normalizePath(task.payload.dst));
    const overwrite = task.payload.overwrite === true;
    const modified = typeof task.payload.modified === 'number' ? task.payload.modified : undefined;
    const spool = (await DataArea.open(ctx.dataDir)).spool(task.id);
    const entry = await spool.driver.stat(spool.path);
    if (!entry || entry.isDir) {
      // Resumed after the file was placed but before success was recorded.
      if (ctx.resumed && (await dst.driver.stat(dst.path))) return;
      throw new FerryError('E_NOT_FOUND', 'the uploaded data is gone from the spool');
    }
    const size = entry.size;
    ctx.progress.setTotals({ bytes: size, files: 1 });
    const times = modified !== undefined ? { modified } : {};
    // A node that stalled past its lease places nothing over the holder's result.
    await ctx.fence();
    // The spool is kept for a retry until success is recorded: linked, never moved.
    if (await linkInto(spool, dst, { overwrite, tempKey: task.id, ...times })) {
      ctx.progress.addBytes(size);
    } else {
      await copyBetween(spool, dst, size, {
        signal: ctx.signal,
        overwrite,
        tempKey: task.id,
        // The spool goes once the task succeeds: the copy is on disk before that.
        sync: true,
        ...times,
        onProgress: (n) => ctx.progress.addBytes(n),
      });
    }
    ctx.progress.fileDone();
  },
  succeeded: removeSpool,
  discard: removeSpool,
};

async function removeSpool(task: { id: string }, deps: KindDeps): Promise<void> {
  const spool = (await DataArea.open(deps.dataDir)).spool(task.id);
  await spool.driver.remove(spool.path, { file: true });
}
