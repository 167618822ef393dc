import { rm, stat } from 'node:fs/promises';
import { FerryError } from '../../errors.ts';
import { LocalDriver } from '../../storage/local/local-driver.ts';
import { decompressUploadDefinition } from '../definitions/decompress.ts';
import { copyPlanned } from './copy.ts';
import { workArea } from './decompress.ts';
import type { KindDeps, TaskKindHandler } from './kind.ts';

async function removeArea(task: { id: string }, deps: KindDeps): Promise<void> {
  await rm(workArea(deps.dataDir, task.id), { recursive: true, force: true });
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
    const area = workArea(ctx.dataDir, task.id);
    if (
      !(await stat(area).then(
        (s) => s.isDirectory(),
        () => false,
      ))
    )
      throw new FerryError('E_NOT_FOUND', 'the extracted files are gone from the data directory');
    const { dstDir, overwrite } = decompressUploadDefinition.read(task.payload);
    const dst = ctx.mounts.resolve(dstDir);
    const local = await LocalDriver.open(area);
    try {
      await copyPlanned(
        { src: { driver: local, path: '/' }, dst, dstPath: dst.path, isDir: true, size: 0, link: false },
        { src: '/', dstDir, overwrite, skipExisting: false, keepBoth: false },
        ctx,
      );
    } finally {
      await local.close();
    }
  },
  succeeded: removeArea,
  discard: removeArea,
};
