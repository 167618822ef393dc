import { link, readdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { FerryError, fromFsError } from '../../errors.ts';
import type { Driver } from '../../storage/driver.ts';
import { joinPath, tempPathFor } from '../../storage/paths.ts';
import {
  type DeletePolicy,
  type OfflineTransferPayload,
  offlineTransferDefinition,
  readDeletePolicy,
} from '../definitions/offline-download.ts';
import type { Task } from '../model.ts';
import type { KindDeps, TaskContext, TaskKindHandler } from './kind.ts';
import { writeLocalFile } from './ranged-fetch.ts';

/** `<dataDir>/offline/<taskId>`: one offline download's own area. */
export function offlineArea(dataDir: string, taskId: string): string {
  if (!/^[\w-]+$/.test(taskId)) throw new FerryError('E_BAD_REQUEST', 'bad task id');
  return join(dataDir, 'offline', taskId);
}

function readPayload(task: Task, dataDir: string): OfflineTransferPayload {
  const p = offlineTransferDefinition.read(task.payload);
  const root = join(dataDir, 'offline') + sep;
  if (!resolve(p.src).startsWith(root) || resolve(p.src) !== p.src)
    throw new FerryError('E_PATH_OUTSIDE_ROOT', 'transfer source is not in the offline download area');
  return p;
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
    const p = readPayload(task, ctx.dataDir);
    const dst = ctx.mounts.resolve(p.dstDir);
    const dstPath = joinPath(dst.path, basename(p.src));
    const srcStat = await stat(p.src).catch(() => null);
    if (!srcStat) {
      // Placed (and the download removed) just before a crash: nothing left to do.
      if (ctx.resumed && (await dst.driver.stat(dstPath))) return;
      throw new FerryError('E_NOT_FOUND', `the downloaded data is gone: ${p.src}`);
    }
    const keep = keepsOnSuccess(p.deletePolicy);
    try {
      const totals = srcStat.isDirectory() ? await measure(p.src) : { bytes: srcStat.size, files: 1 };
      ctx.progress.setTotals(totals);
      ctx.progress.setStatus(basename(p.src));
      await dst.driver.mkdir(dst.path);
      // Placing is not undone: a node that stalled past its lease must not place over the result.
      await ctx.fence();
      const local = dst.driver.localPath(dstPath);
      if (
        local &&
        (await placeLocally(p.src, local, { dir: srcStat.isDirectory(), keep, taskId: task.id }))
      ) {
        ctx.progress.addBytes(totals.bytes);
        for (let i = 0; i < totals.files; i++) ctx.progress.fileDone();
      } else if (srcStat.isDirectory()) {
        await streamTree(p.src, dst.driver, dstPath, ctx);
      } else {
        await streamFile(p.src, dst.driver, dstPath, srcStat.size, ctx);
        ctx.progress.fileDone();
      }
    } catch (err) {
      const final = (err instanceof FerryError && err.unrecoverable) || task.attempts + 1 > task.maxRetry;
      const deleteOnFailure =
        p.deletePolicy === 'delete_on_upload_failed' || p.deletePolicy === 'delete_always';
      if (!ctx.signal.aborted && final && deleteOnFailure) await removeSource(p.src);
      throw err;
    }
    if (!keep) {
      await ctx.fence();
      await removeSource(p.src);
    }
  },
  async discard(task, deps: KindDeps) {
    // A transfer that never succeeded (failed, canceled) and is deleted: nobody can retry it, so
    // its download goes unless the policy says to keep downloads.
    const policy = readDeletePolicy(task.payload.deletePolicy);
    if (policy === 'delete_never' || policy === 'delete_on_upload_failed') return;
    const p = readPayload(task, deps.dataDir);
    await removeSource(p.src);
  },
};

/**
 * Rename (or link, to keep the source) into place on the same file system; false when that is
 * not possible here (another file system, a folder already at the destination, or keeping a
 * folder), so the caller streams instead.
 */
async function placeLocally(
  src: string,
  target: string,
  options: { dir: boolean; keep: boolean; taskId: string },
): Promise<boolean> {
  if (options.dir && options.keep) return false;
  const fallBack = (err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (['EXDEV', 'EPERM', 'EMLINK', 'ENOTEMPTY', 'EEXIST', 'EISDIR', 'ENOTDIR'].includes(code ?? ''))
      return false;
    throw fromFsError(err, target);
  };
  if (!options.keep) return rename(src, target).then(() => true, fallBack);
  const temp = tempPathFor(target, options.taskId);
  await unlink(temp).catch(() => undefined);
  try {
    await link(src, temp);
  } catch (err) {
    return fallBack(err);
  }
  try {
    await rename(temp, target);
    return true;
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    return fallBack(err);
  }
}

async function streamFile(src: string, driver: Driver, path: string, size: number, ctx: TaskContext) {
  await writeLocalFile(driver, path, src, size, {
    signal: ctx.signal,
    overwrite: true,
    tempKey: ctx.taskId,
    onProgress: (n) => ctx.progress.addBytes(n),
  });
}

/** A downloaded folder (a torrent's), file by file; a resumed task skips files already there at full size. */
async function streamTree(src: string, driver: Driver, root: string, ctx: TaskContext): Promise<void> {
  await driver.mkdir(root);
  for (const entry of await readdir(src, { withFileTypes: true, recursive: true })) {
    ctx.signal.throwIfAborted();
    const abs = join(entry.parentPath, entry.name);
    const rel = abs.slice(src.length).split(sep).join('/');
    const path = joinPath(root, rel);
    if (entry.isDirectory()) {
      await driver.mkdir(path);
      continue;
    }
    if (!entry.isFile()) continue;
    const { size } = await stat(abs);
    const existing = ctx.resumed ? await driver.stat(path) : null;
    if (existing && !existing.isDir && existing.size === size) ctx.progress.addBytes(size);
    else await streamFile(abs, driver, path, size, ctx);
    ctx.progress.fileDone();
  }
}

async function measure(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return { bytes, files };
}

/** Remove a download and the folders it leaves empty (`done/`, then the task's area). */
async function removeSource(src: string): Promise<void> {
  await rm(src, { recursive: true, force: true });
  const done = dirname(src);
  await rmdir(done).catch(() => undefined);
  await rmdir(dirname(done)).catch(() => undefined);
}
