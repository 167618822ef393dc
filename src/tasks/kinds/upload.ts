import { FerryError } from '../../errors.ts';
import { DataArea } from '../../storage/data-area.ts';
import { copyBetween, linkInto } from '../../storage/transfer.ts';
import { uploadDefinition } from '../definitions/upload.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';

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
    const { dst: path, overwrite, modified } = uploadDefinition.read(task.payload);
    const dst = ctx.mounts.resolve(path);
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
    // A node that stalled past its lease places nothing over the holder's result: each way of
    // placing checks the lease right before its final step.
    const beforePlace = () => ctx.fence();
    // The spool is kept for a retry until success is recorded: linked, never moved.
    if (await linkInto(spool, dst, { overwrite, tempKey: task.id, beforePlace, ...times })) {
      ctx.progress.addBytes(size);
    } else {
      await copyBetween(spool, dst, size, {
        signal: ctx.signal,
        overwrite,
        tempKey: task.id,
        // The spool goes once the task succeeds: the copy is on disk before that.
        sync: true,
        ...times,
        beforePlace,
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
