import { FerryError } from '../../errors.ts';
import { DataArea } from '../../storage/data-area.ts';
import { decompressUploadDefinition } from '../definitions/decompress.ts';
import { copyPlanned } from './copy.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';

async function removeArea(task: { id: string }, deps: KindDeps): Promise<void> {
  const area = (await DataArea.open(deps.dataDir)).decompress(task.id);
  await area.driver.remove(area.path);
}

/**
 * Upload the tree a decompress task extracted into this task's work area to a non-Local
 * destination: one task for the whole tree, with counts, bytes and per-item failures as a folder
 * copy has (a retry skips files already identical there). The work area is removed once the task
 * succeeds or is deleted.
 */
export const decompressUploadKind: TaskKindHandler = {
  kind: 'decompress_upload',
  async run(task, ctx) {
    const area = (await DataArea.open(ctx.dataDir)).decompress(task.id);
    if (!(await area.driver.stat(area.path))?.isDir)
      throw new FerryError('E_NOT_FOUND', 'the extracted files are gone from the data directory');
    const { dstDir, overwrite } = decompressUploadDefinition.read(task.payload);
    const dst = ctx.mounts.resolve(dstDir);
    await copyPlanned(
      { src: area, dst, dstPath: dst.path, isDir: true, size: 0, link: false },
      { src: '/', dstDir, overwrite, skipExisting: false, keepBoth: false },
      ctx,
    );
  },
  succeeded: removeArea,
  discard: removeArea,
};
