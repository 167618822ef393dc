import type { ArchiveLimits, TaskKind } from '../../config.ts';
import { copyKind } from './copy.ts';
import { decompressKind } from './decompress.ts';
import { decompressUploadKind } from './decompress-upload.ts';
import { deleteKind } from './delete.ts';
import type { TaskKindHandler } from './kind.ts';
import { moveKind } from './move.ts';
import { uploadKind } from './upload.ts';

/** The task kinds this build runs. Kinds without a handler stay queued until one exists. */
export function builtinKinds(options: { archive: ArchiveLimits }): Map<TaskKind, TaskKindHandler> {
  return new Map<TaskKind, TaskKindHandler>(
    [copyKind, moveKind, deleteKind, uploadKind, decompressKind(options.archive), decompressUploadKind].map(
      (k) => [k.kind, k],
    ),
  );
}
