import { nameFromUrl } from '../../download/file-name.ts';
import type { HttpResumeState } from '../../download/http-download.ts';
import { TOOLS, type Tool } from '../../download/url-policy.ts';
import { FerryError } from '../../errors.ts';
import { normalizePath } from '../../storage/paths.ts';
import { bracketed, stringField, type TaskDefinition } from './task-definition.ts';

/**
 * AList's `delete_policy`: what happens to the downloaded file in ferry's data dir after the
 * transfer; or `upload_download_stream` (the OpenList UI's default), where SimpleHttp streams the
 * body straight to the destination: no file in the data dir, no transfer task (other tools
 * refuse it when the download is added).
 */
export const DELETE_POLICIES = [
  'delete_on_upload_succeed',
  'delete_on_upload_failed',
  'delete_never',
  'delete_always',
  'upload_download_stream',
] as const;
export type DeletePolicy = (typeof DELETE_POLICIES)[number];

/** A `delete_policy` as given; none is `delete_on_upload_succeed`, anything unknown `E_BAD_REQUEST`. */
export function readDeletePolicy(value: unknown): DeletePolicy {
  if (value === undefined || value === null || value === '') return 'delete_on_upload_succeed';
  if (!(DELETE_POLICIES as readonly unknown[]).includes(value))
    throw new FerryError('E_BAD_REQUEST', `delete_policy must be one of ${DELETE_POLICIES.join(', ')}`);
  return value as DeletePolicy;
}

/** Input of an `offline_download` task, plus the resume state it saves as it goes. */
export type OfflineDownloadPayload = {
  url: string;
  /** Virtual path of the destination folder. */
  dstDir: string;
  tool: Tool;
  deletePolicy: DeletePolicy;
  /** SimpleHttp: validators of the partial file, for `Range` + `If-Range` on the next attempt. */
  http?: HttpResumeState;
  /** aria2: the download's gid, to follow it again after a retry or restart. */
  gid?: string;
  /** The transfer tasks exist: they own `done/` from here on. */
  handedOff?: boolean;
};

export const offlineDownloadDefinition: TaskDefinition<'offline_download', OfflineDownloadPayload> = {
  kind: 'offline_download',
  read: (p) => {
    if (!(TOOLS as readonly unknown[]).includes(p.tool))
      throw new FerryError('E_BAD_REQUEST', `payload: tool must be one of ${TOOLS.join(', ')}`);
    return {
      url: stringField(p, 'url'),
      dstDir: normalizePath(p.dstDir),
      tool: p.tool as Tool,
      deletePolicy: readDeletePolicy(p.deletePolicy),
      ...(typeof p.http === 'object' && p.http !== null && { http: p.http as HttpResumeState }),
      ...(typeof p.gid === 'string' && { gid: p.gid }),
      handedOff: p.handedOff === true,
    };
  },
  name: (p) => `download ${nameOf(p.url)} to (${p.dstDir})`,
};

function nameOf(url: string): string {
  try {
    return nameFromUrl(new URL(url));
  } catch {
    return url;
  }
}

/** Input of an `offline_download_transfer` task. */
export type OfflineTransferPayload = {
  /** Absolute path of the downloaded file or folder, inside `<dataDir>/offline/`. */
  src: string;
  /** Virtual path of the destination folder. */
  dstDir: string;
  deletePolicy: DeletePolicy;
};

/**
 * `read` checks the payload's shape only; the kind checks that `src` lies in the offline download
 * area of its data directory before it touches it.
 */
export const offlineTransferDefinition: TaskDefinition<'offline_download_transfer', OfflineTransferPayload> =
  {
    kind: 'offline_download_transfer',
    read: (p) => ({
      src: stringField(p, 'src'),
      dstDir: normalizePath(p.dstDir),
      deletePolicy: readDeletePolicy(p.deletePolicy),
    }),
    // The seed's name for a local offline download's transfer.
    name: (p, locate) => `transfer [](${p.src}) to ${bracketed(locate(p.dstDir))}`,
  };
