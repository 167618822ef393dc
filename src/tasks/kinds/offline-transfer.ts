import { FerryError } from '../../errors.ts';
import { DataArea } from '../../storage/data-area.ts';
import type { Endpoint } from '../../storage/driver.ts';
import { baseName, joinPath, parentPath } from '../../storage/paths.ts';
import { copyBetween, moveInto } from '../../storage/transfer.ts';
import {
  type DeletePolicy,
  type OfflineTransferPayload,
  offlineTransferDefinition,
} from '../definitions/offline-download.ts';
import type { Task } from '../model.ts';
import type { KindDeps, TaskContext, TaskKindHandler } from './kind.ts';
import { measureTree, walkTree } from './transfer.ts';

/** The payload, and the downloaded file or folder it names in the data area. */
function readPayload(task: Task, data: DataArea): OfflineTransferPayload & { source: Endpoint } {
  const p = offlineTransferDefinition.read(task.payload);
  return { ...p, source: data.offlineFile(p.src) };
}

/** Policies that keep the downloaded file once it is in place. */
function keepsOnSuccess(policy: DeletePolicy): boolean {
  return policy === 'delete_never' || policy === 'delete_on_upload_failed';
}

/**
 * Move a finished offline download into its destination folder (replacing a file of the same
 * name, as AList's transfer does). To a Local mount on the same file system the file is renamed
 * into place (or hard-linked, when the policy keeps the download), which is atomic; otherwise it
 * is streamed through the destination driver's `write()` (temp name, then placed).
 * `delete_policy` decides when the downloaded file is removed: after success, after the final
 * failure, never, or always; `discard` frees what a deleted task still held.
 */
export const offlineTransferKind: TaskKindHandler = {
  kind: 'offline_download_transfer',
  async run(task, ctx) {
    const p = readPayload(task, await DataArea.open(ctx.dataDir));
    const src = p.source;
    const dst = ctx.mounts.resolve(p.dstDir);
    const name = baseName(src.path);
    const target = { driver: dst.driver, path: joinPath(dst.path, name) };
    const srcEntry = await src.driver.stat(src.path);
    if (!srcEntry) {
      // Placed (and the download removed) just before a crash: nothing left to do.
      if (ctx.resumed && (await target.driver.stat(target.path))) return;
      throw new FerryError('E_NOT_FOUND', `the downloaded data is gone: ${p.src}`);
    }
    const keep = keepsOnSuccess(p.deletePolicy);
    try {
      const totals = srcEntry.isDir
        ? await measureTree(src.driver, src.path, ctx.signal)
        : { bytes: srcEntry.size, files: 1 };
      ctx.progress.setTotals(totals);
      ctx.progress.setStatus(name);
      await dst.driver.mkdir(dst.path);
      // Placing is not undone: a node that stalled past its lease must not place over the result.
      // Every way of placing checks the lease right before its final step.
      const beforePlace = () => ctx.fence();
      if (await moveInto(src, target, { keepSource: keep, tempKey: task.id, beforePlace })) {
        ctx.progress.addBytes(totals.bytes);
        for (let i = 0; i < totals.files; i++) ctx.progress.fileDone();
      } else if (srcEntry.isDir) {
        await copyTree(src, target, ctx);
      } else {
        await copyFile(src, target, srcEntry.size, ctx);
        ctx.progress.fileDone();
      }
    } catch (err) {
      const final = (err instanceof FerryError && err.unrecoverable) || task.attempts + 1 > task.maxRetry;
      const deleteOnFailure =
        p.deletePolicy === 'delete_on_upload_failed' || p.deletePolicy === 'delete_always';
      if (!ctx.signal.aborted && final && deleteOnFailure) await removeSource(src);
      throw err;
    }
    if (!keep) {
      await ctx.fence();
      await removeSource(src);
    }
  },
  async discard(task, deps: KindDeps) {
    // A transfer that never succeeded (failed, canceled) and is deleted: nobody can retry it, so
    // its download goes unless the policy says to keep downloads.
    const p = readPayload(task, await DataArea.open(deps.dataDir));
    if (p.deletePolicy === 'delete_never' || p.deletePolicy === 'delete_on_upload_failed') return;
    await removeSource(p.source);
  },
};

/** One downloaded file into place (replacing a file of the same name, as AList's transfer does). */
async function copyFile(src: Endpoint, dst: Endpoint, size: number, ctx: TaskContext) {
  await copyBetween(src, dst, size, {
    signal: ctx.signal,
    overwrite: true,
    tempKey: ctx.taskId,
    // The download may be deleted once the task succeeds: the copy is on disk before that.
    sync: true,
    beforePlace: () => ctx.fence(),
    ownsTemp: () => ctx.holds(),
    onProgress: (n) => ctx.progress.addBytes(n),
  });
}

/** A downloaded folder (a torrent's), file by file; a resumed task skips files already there at full size. */
async function copyTree(src: Endpoint, dst: Endpoint, ctx: TaskContext): Promise<void> {
  await dst.driver.mkdir(dst.path);
  for await (const { entry, rel } of walkTree(src.driver, src.path, ctx.signal)) {
    const path = joinPath(dst.path, rel);
    if (entry.isDir) {
      await dst.driver.mkdir(path);
      continue;
    }
    const existing = ctx.resumed ? await dst.driver.stat(path) : null;
    if (existing && !existing.isDir && existing.size === entry.size) ctx.progress.addBytes(entry.size);
    else
      await copyFile(
        { driver: src.driver, path: joinPath(src.path, rel) },
        { driver: dst.driver, path },
        entry.size,
        ctx,
      );
    ctx.progress.fileDone();
  }
}

/** Remove a download and the folders it leaves empty (`done/`, then the task's area). */
async function removeSource(src: Endpoint): Promise<void> {
  await src.driver.remove(src.path);
  const done = parentPath(src.path);
  await removeIfEmpty({ driver: src.driver, path: done });
  await removeIfEmpty({ driver: src.driver, path: parentPath(done) });
}

async function removeIfEmpty(folder: Endpoint): Promise<void> {
  const entries = await folder.driver.list(folder.path).catch(() => null);
  if (entries?.length === 0) await folder.driver.remove(folder.path).catch(() => undefined);
}
