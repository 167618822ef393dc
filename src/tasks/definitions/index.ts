import type { TaskKind } from '../../config.ts';
import { type CopyPayload, copyDefinition, moveDefinition } from './copy.ts';
import {
  type DecompressPayload,
  type DecompressUploadPayload,
  decompressDefinition,
  decompressUploadDefinition,
} from './decompress.ts';
import { type DeletePayload, deleteDefinition } from './delete.ts';
import {
  type OfflineDownloadPayload,
  type OfflineTransferPayload,
  offlineDownloadDefinition,
  offlineTransferDefinition,
} from './offline-download.ts';
import { syncDefinition, type TreeRunPayload } from './sync.ts';
import type { Locate, TaskDefinition } from './task-definition.ts';
import { type UploadPayload, uploadDefinition } from './upload.ts';

/** Each kind's one payload type. */
export interface TaskPayloads {
  upload: UploadPayload;
  copy: CopyPayload;
  move: CopyPayload;
  delete: DeletePayload;
  offline_download: OfflineDownloadPayload;
  offline_download_transfer: OfflineTransferPayload;
  decompress: DecompressPayload;
  decompress_upload: DecompressUploadPayload;
  sync: TreeRunPayload;
}

/** Every kind's definition, by kind. */
export const TASK_DEFINITIONS: { readonly [K in TaskKind]: TaskDefinition<K, TaskPayloads[K]> } = {
  upload: uploadDefinition,
  copy: copyDefinition,
  move: moveDefinition,
  delete: deleteDefinition,
  offline_download: offlineDownloadDefinition,
  offline_download_transfer: offlineTransferDefinition,
  decompress: decompressDefinition,
  decompress_upload: decompressUploadDefinition,
  sync: syncDefinition,
};

/** What a task is created from: its kind, name and that kind's payload (the one way to add a task). */
export type TaskSpec = {
  [K in TaskKind]: {
    kind: K;
    name: string;
    payload: TaskPayloads[K];
    totalBytes?: number;
    totalFiles?: number;
    /** Use this id (uploads spool their body under the id before the task exists). */
    id?: string;
  };
}[TaskKind];

/**
 * A task of `kind` with `payload`, named by its kind's definition. The payload goes through the
 * definition's `read` first, so what is stored is what the kind will read back.
 */
export function taskSpec<K extends TaskKind>(
  kind: K,
  payload: TaskPayloads[K],
  locate: Locate,
  extra: { totalBytes?: number; totalFiles?: number; id?: string } = {},
): TaskSpec {
  const definition = TASK_DEFINITIONS[kind] as TaskDefinition<K, TaskPayloads[K]>;
  const checked = definition.read(payload as Readonly<Record<string, unknown>>);
  return { kind, name: definition.name(checked, locate), payload: checked, ...extra } as TaskSpec;
}

export type { Locate, Location, TaskDefinition } from './task-definition.ts';
export { bracketed } from './task-definition.ts';
