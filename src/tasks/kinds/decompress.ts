import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { archiveStem, ExtractionGuard, extractArchive, formatOf, LocalTree } from '../../archive/index.ts';
import type { ArchiveLimits } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import { baseName, checkName, joinPath } from '../../storage/paths.ts';
import { decompressDefinition } from '../definitions/decompress.ts';
import { taskSpec } from '../definitions/index.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';

/** A task's private folder in the data directory (`<dataDir>/decompress/<taskId>`). */
export function workArea(dataDir: string, taskId: string): string {
  if (!/^[\w-]+$/.test(taskId)) throw new FerryError('E_BAD_REQUEST', 'bad task id');
  return join(dataDir, 'decompress', taskId);
}

/** The id of the decompress_upload task a decompress task queues: fixed, so queueing is idempotent. */
export function uploadTaskId(taskId: string): string {
  return `${taskId}-upload`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function removeArea(task: { id: string }, deps: KindDeps): Promise<void> {
  await rm(workArea(deps.dataDir, task.id), { recursive: true, force: true });
}

/**
 * Extract an archive. A Local destination receives the files directly (each under a temp name,
 * then renamed into place); any other destination gets them through a temp tree in the data
 * directory, handed to a `decompress_upload` task of the same creator, which owns it from then
 * on. An archive on a remote driver is first copied into this task's work area. A retry starts
 * the extraction over (files already in place are replaced only with `overwrite`).
 */
export function decompressKind(limits: ArchiveLimits): TaskKindHandler {
  return {
    kind: 'decompress',
    async run(task, ctx) {
      const p = decompressDefinition.read(task.payload);
      const { progress, signal } = ctx;
      const src = ctx.mounts.resolve(p.src);
      const entry = await src.driver.stat(src.path);
      if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${p.src}`);
      if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', `not an archive but a folder: ${p.src}`);
      const name = baseName(src.path);
      const format = formatOf(name);
      if (!format) throw new FerryError('E_ARCHIVE_FORMAT', `not an archive ferry can read: ${name}`);
      const dst = ctx.mounts.resolve(p.dstDir);
      const target = p.putIntoNewDir ? joinPath(dst.path, checkName(archiveStem(name))) : dst.path;
      const area = workArea(ctx.dataDir, task.id);
      const uploadId = uploadTaskId(task.id);
      const uploadArea = workArea(ctx.dataDir, uploadId);
      const handOver = () =>
        ctx.enqueue({
          id: uploadId,
          ...taskSpec(
            'decompress_upload',
            { dstDir: joinPath(dst.mountPath, target), overwrite: p.overwrite, archive: name },
            (path) => ctx.mounts.resolve(path),
          ),
        });
      // Resumed after the tree was handed over but before the upload task was recorded.
      if (ctx.resumed && (await exists(uploadArea))) {
        await handOver();
        return;
      }

      const extract = async () => {
        let file = src.driver.localPath(src.path);
        if (!file) {
          progress.setStatus(`caching ${name}`);
          file = join(area, `archive-${name}`);
          await mkdir(area, { recursive: true });
          const source = await src.driver.read(src.path, { signal });
          await pipeline(source, createWriteStream(file), { signal });
        }
        progress.setStatus(`extracting ${name}`);
        if (format.startsWith('tar')) progress.setTotals({ bytes: entry.size });

        const dstLocal = dst.driver.localPath(target);
        if (dstLocal) await dst.driver.mkdir(target);
        const treeRoot = dstLocal ?? join(area, 'tree');
        const guard = new ExtractionGuard(limits, entry.size);
        const tree = await LocalTree.open(treeRoot, {
          // The temp tree is private: only the upload decides about the destination's files.
          overwrite: dstLocal ? p.overwrite : true,
          tempKey: task.id,
          signal,
          guard,
          onBytes: format === 'zip' ? (n) => progress.addBytes(n) : () => undefined,
          onFileDone: () => progress.fileDone(),
          onItemFailed: (rel, err) => progress.itemFailed(rel, err.message),
        });
        let skippedLinks = 0;
        await extractArchive(format, {
          file,
          password: p.password,
          innerPath: p.innerPath,
          signal,
          guard,
          tree,
          stageDir: join(area, 'stage'),
          setTotals: (t) => progress.setTotals(t),
          onArchiveBytes: (n) => progress.addBytes(n),
          onSkippedLink: (rel) => {
            skippedLinks++;
            ctx.log.info({ entry: rel }, 'link inside the archive not created');
          },
        });
        if (progress.failedCount > 0)
          throw new FerryError('E_EXISTS', `${progress.failedCount} entries could not be placed`);
        // The files are on disk before the task says so (one syncfs, not an fsync per file),
        // unless they are left to the OS (`syncFiles`).
        await (ctx.syncFiles ? tree.flush() : tree.settle());
        progress.setStatus(skippedLinks > 0 ? `done; ${skippedLinks} links not created` : '');
        if (!dstLocal) {
          await rm(uploadArea, { recursive: true, force: true });
          await rename(treeRoot, uploadArea);
          await handOver();
        }
      };

      await rm(area, { recursive: true, force: true });
      try {
        await extract();
      } catch (err) {
        // Whatever was cached, staged or half-extracted is of no use: a retry starts over.
        await rm(area, { recursive: true, force: true });
        throw err;
      }
    },
    succeeded: removeArea,
    discard: removeArea,
  };
}
