import { etaSeconds, type HolderView, progressOf, TASK_STATES, type Task } from '../../tasks/model.ts';
import type { AlistFlavour } from './flavour.ts';

/**
 * A task in AList's shape (the seed's fields first), plus ferry's extra counters. The extras are
 * in both flavours: AList's clients read the fields they know and pass over the rest (pydantic
 * models, as in alist-sdk, ignore unknown fields by default).
 */
export interface AlistTask {
  id: string;
  name: string;
  creator: string;
  creator_role: number;
  /** `seed`: the state's name (`"succeeded"`); `current`: tache's number, 0–9 in the seed's order. */
  state: string | number;
  /** `seed`: ferry's status line; `current`: AList's status text (`alistStatus`). */
  status: string;
  progress: number;
  start_time: string | null;
  end_time: string | null;
  total_bytes: number;
  error: string;
  // ferry's additions
  type: string;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
  failed_files: number;
  /** Bytes per second while running. */
  speed: number;
  /** Seconds left at the current speed, null when unknown. */
  eta: number | null;
  retries: number;
  created_at: string;
  /** `current` only: ferry's own status line (the file being moved, …), which `status` gives in `seed`. */
  detail?: string;
  failures?: { path: string; error: string }[];
  /** A task's detail (`info`) only: the node holding it, null when none does. */
  node?: string | null;
  /** A task's detail only: how long ago its holder last renewed the lease (ms), null when none holds it. */
  lease_renewed_ago_ms?: number | null;
  /** A task's detail only: true when its holder stopped renewing (dead or stalled; another node takes it over). */
  holder_stalled?: boolean;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * Render a task for the AList dialect in `flavour` (`flavourOf(request)`). `seed` is the seed's
 * contract; `current` is today's AList: numeric `state`, AList's `status` texts and, for offline
 * downloads, the URL in the name.
 */
export function alistTask(
  task: Task,
  flavour: AlistFlavour,
  options: { withFailures?: boolean; holder?: HolderView } = {},
): AlistTask {
  const current = flavour === 'current';
  return {
    id: task.id,
    name: current ? currentName(task) : task.name,
    creator: task.creator,
    creator_role: task.creatorRole,
    state: current ? TASK_STATES.indexOf(task.state) : task.state,
    status: current ? alistStatus(task) : task.status,
    progress: Math.round(progressOf(task) * 100) / 100,
    start_time: iso(task.startTime),
    end_time: iso(task.endTime),
    total_bytes: task.totalBytes,
    error: task.error,
    type: task.kind,
    processed_bytes: task.doneBytes,
    total_files: task.totalFiles,
    processed_files: task.doneFiles,
    failed_files: task.failedFiles,
    speed: Math.round(task.speed),
    eta: etaSeconds(task),
    retries: task.attempts,
    created_at: new Date(task.createdAt).toISOString(),
    ...(current && { detail: task.status }),
    ...(options.withFailures && { failures: task.failures }),
    ...(options.holder && {
      node: options.holder.node,
      lease_renewed_ago_ms: options.holder.leaseRenewedAgoMs,
      holder_stalled: options.holder.holderStalled,
    }),
  };
}

/**
 * The name today's AList gives the task. Only offline downloads differ: the seed names them
 * `download <file name> to (<dir>)` and that is what is stored, while AList (and the OpenList UI,
 * which links the part after `download ` as the URL) uses `download <url> to (<dir>)`. The URL
 * form is derived from the payload here rather than stored, so the seed flavour keeps its names
 * and both flavours can read every task, old or new.
 */
function currentName(task: Task): string {
  const { url, dstDir } = task.payload;
  if (task.kind !== 'offline_download' || typeof url !== 'string' || typeof dstDir !== 'string')
    return task.name;
  return `download ${url} to (${dstDir})`;
}

/**
 * AList's status text for the task, by kind and by what ferry knows of its phase. AList sets a
 * status as each step starts and leaves the last one in place when the task ends, and has none
 * before a task first runs (`""`); this follows it. The texts are AList's own (OpenList
 * `internal/fs/copy_move.go`, `put.go`, `archive.go`, `internal/offline_download/tool/`):
 * - upload: always `uploading`.
 * - copy, move: `getting src object` until the first byte or file has moved, then `uploading`.
 *   (AList splits a folder into one task per file; ferry moves the folder in one task.)
 * - offline_download: SimpleHttp sets no status in AList (`""`); aria2 is `[aria2]: aria2: active`
 *   while it downloads and `offline download completed, maybe transferring` once done.
 * - offline_download_transfer: `getting src object` (AList's last text for a file).
 * - decompress: `getting src object` while a remote archive is fetched, then
 *   `walking and decompressing`.
 * - decompress_upload: `uploading`.
 * - delete and sync have no AList counterpart: ferry's own status line.
 */
export function alistStatus(task: Task): string {
  if (task.startTime === null && task.kind !== 'upload') return '';
  const moved = task.doneBytes > 0 || task.doneFiles > 0;
  switch (task.kind) {
    case 'upload':
    case 'decompress_upload':
      return 'uploading';
    case 'copy':
    case 'move':
      return moved ? 'uploading' : 'getting src object';
    case 'offline_download':
      if (task.payload.tool !== 'aria2') return '';
      return task.state === 'succeeded'
        ? 'offline download completed, maybe transferring'
        : '[aria2]: aria2: active';
    case 'offline_download_transfer':
      return 'getting src object';
    case 'decompress':
      // ferry's decompress says `caching <archive>` while it fetches a remote archive.
      return task.status.startsWith('caching ') ? 'getting src object' : 'walking and decompressing';
    case 'delete':
    case 'sync':
      return task.status;
  }
}
