import type { ArchiveLimits, TaskKind } from '../../config.ts';
import type { OfflineTools } from '../../download/offline-tools.ts';
import { copyKind } from './copy.ts';
import { decompressKind } from './decompress.ts';
import { decompressUploadKind } from './decompress-upload.ts';
import { deleteKind } from './delete.ts';
import type { TaskKindHandler } from './kind.ts';
import { moveKind } from './move.ts';
import { offlineDownloadKind } from './offline-download.ts';
import { offlineTransferKind } from './offline-transfer.ts';
import { syncKind } from './sync.ts';
import { uploadKind } from './upload.ts';

/** What kinds need from outside the engine: archive limits, and the download tools shared by offline downloads. */
export interface KindServices {
  archive: ArchiveLimits;
  offline: OfflineTools;
}

/** The task kinds this build runs. Kinds without a handler stay queued until one exists. */
export function builtinKinds(services: KindServices): Map<TaskKind, TaskKindHandler> {
  return new Map<TaskKind, TaskKindHandler>(
    [
      copyKind,
      moveKind,
      deleteKind,
      uploadKind,
      decompressKind(services.archive),
      decompressUploadKind,
      offlineDownloadKind(services.offline),
      offlineTransferKind,
      syncKind,
    ].map((k) => [k.kind, k]),
  );
}
