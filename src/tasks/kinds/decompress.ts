import { archiveStem, ExtractionGuard, formatOf } from '../../archive/index.ts';
import type { ArchiveLimits } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import { DataArea } from '../../storage/data-area.ts';
import { extractTo } from '../../storage/extraction.ts';
import { baseName, checkName, joinPath } from '../../storage/paths.ts';
import { decompressDefinition } from '../definitions/decompress.ts';
import { taskSpec } from '../definitions/index.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';

/** The id of the decompress_upload task a decompress task queues: fixed, so queueing is idempotent. */
export function uploadTaskId(taskId: string): string {
  return `${taskId}-upload`;
}

async function removeArea(task: { id: string }, deps: KindDeps): Promise<void> {
  const area = (await DataArea.open(deps.dataDir)).decompress(task.id);
  await area.driver.remove(area.path);
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
      const data = await DataArea.open(ctx.dataDir);
      const area = data.decompress(task.id);
      const uploadId = uploadTaskId(task.id);
      const uploadArea = data.decompress(uploadId);
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
      if (ctx.resumed && (await data.driver.stat(uploadArea.path))) {
        await handOver();
        return;
      }

      const extract = async () => {
        let skippedLinks = 0;
        const tree = await extractTo(src, { driver: dst.driver, path: target }, area, {
          format,
          size: entry.size,
          password: p.password,
          innerPath: p.innerPath,
          signal,
          guard: new ExtractionGuard(limits, entry.size),
          overwrite: p.overwrite,
          tempKey: task.id,
          // The files are on disk before the task says so, unless left to the OS (`syncFiles`).
          sync: ctx.syncFiles,
          // Into a Local destination each file is placed as extracted: each checks the lease.
          beforePlace: () => ctx.fence(),
          onStage: (stage) => {
            progress.setStatus(`${stage} ${name}`);
            if (stage === 'extracting' && format.startsWith('tar')) progress.setTotals({ bytes: entry.size });
          },
          setTotals: (t) => progress.setTotals(t),
          onBytes: format === 'zip' ? (n) => progress.addBytes(n) : () => undefined,
          onArchiveBytes: (n) => progress.addBytes(n),
          onFileDone: () => progress.fileDone(),
          onItemFailed: (rel, err) => progress.itemFailed(rel, err.message),
          onSkippedLink: (rel) => {
            skippedLinks++;
            ctx.log.info({ entry: rel }, 'link inside the archive not created');
          },
        });
        if (progress.failedCount > 0)
          throw new FerryError('E_EXISTS', `${progress.failedCount} entries could not be placed`);
        progress.setStatus(skippedLinks > 0 ? `done; ${skippedLinks} links not created` : '');
        if (tree) {
          await data.driver.remove(uploadArea.path);
          await data.driver.rename(tree.path, uploadArea.path);
          await handOver();
        }
      };

      await data.driver.remove(area.path);
      try {
        await extract();
      } catch (err) {
        // Whatever was cached, staged or half-extracted is of no use: a retry starts over.
        await data.driver.remove(area.path);
        throw err;
      }
    },
    succeeded: removeArea,
    discard: removeArea,
  };
}
