import type { Readable } from 'node:stream';
import { FerryError } from '../errors.ts';

/** One file or folder as a driver sees it. `path` is relative to the driver's root, always starting with `/`. */
export interface Entry {
  name: string;
  path: string;
  isDir: boolean;
  size: number;
  /** Modification time in ms since the epoch. */
  modified: number;
  /**
   * A link the driver follows (Local: one that stays inside the root): the entry describes what
   * it leads to. Removing the path removes the link only, but removing a path below it would
   * remove what is inside the folder it leads to: a walk that deletes must not go through it.
   */
  link?: true;
}

export interface MeasureOptions {
  /**
   * Count a followed link (`Entry.link`) as one empty file instead of counting what it leads to:
   * what a delete of the tree removes.
   */
  linksAsFiles?: boolean;
}

export interface RemoveTreeOptions {
  signal: AbortSignal;
  /** A file below the folder is gone. */
  removed(entry: Entry): void;
  /** A file below the folder could not be removed. */
  failed(path: string, err: Error): void;
}

export interface DriverCapabilities {
  /** `copy()` runs on the backend without moving the bytes through ferry. */
  serverSideCopy: boolean;
  /** `rename()` replaces the destination atomically. */
  atomicRename: boolean;
  /**
   * `rename()` of a folder is one operation on the backend. False where it copies every file
   * (S3): a move within the mount then goes file by file, as between mounts, with progress, a
   * cancel that stops it, and each source deleted only once its copy is checked.
   */
  folderRename: boolean;
  /** `read()` honours `start`/`end`. */
  rangeRead: boolean;
}

export interface ReadOptions {
  /** First byte, inclusive. */
  start?: number;
  /** Last byte, inclusive (as in HTTP ranges). */
  end?: number;
  signal?: AbortSignal;
}

export interface WriteOptions {
  signal?: AbortSignal;
  /** Expected size when known; drivers may use it to choose an upload strategy. */
  size?: number;
  /** Replace an existing file. Without it, an existing destination is `E_EXISTS`. */
  overwrite?: boolean;
  /** Called with the number of bytes written since the previous call. */
  onProgress?: (bytes: number) => void;
  /**
   * Names the temporary file (see `tempToken`): a write retried with the same key reuses the
   * temp name of an interrupted attempt, so a crash leaves no orphan behind.
   */
  tempKey?: string;
  /**
   * The file's modification time, ms since the epoch (an upload's `Last-Modified`). Set by the
   * drivers whose backend keeps a time that can be set: Local and SFTP (to the second on SFTP).
   * S3 ignores it (the server stamps `LastModified` itself, and a listing shows no other time),
   * and WebDAV too (RFC 4918 makes `getlastmodified` protected; servers set it on PUT).
   */
  modified?: number;
  /**
   * Flush the file to disk before it takes its name (the default). False leaves that to the
   * operating system (`syncFiles`). Only the Local driver has anything to flush.
   */
  sync?: boolean;
  /**
   * Awaited right before the step that gives the file its final name (rename, MOVE,
   * CompleteMultipartUpload), after every byte is written. If it throws, the write removes or
   * aborts its temp as on any failure and rethrows: a task uses it to check it still holds its
   * lease, so a node paused past it places nothing on waking.
   */
  beforePlace?: () => Promise<void>;
}

/**
 * Fill all of `into` with a file's bytes from `start` on (see `Driver.writeRanges`); fails if the
 * file ends first or sends more.
 */
export type ReadInto = (start: number, into: Buffer, signal?: AbortSignal) => Promise<void>;

/** A file or folder on some driver. */
export interface Endpoint {
  driver: Driver;
  path: string;
}

/**
 * The contract every storage backend fulfils. Paths are driver-relative (`/a/b.txt`), already
 * normalised by `normalizePath`; every driver checks again that they stay inside its root
 * (`E_PATH_OUTSIDE_ROOT`). A driver knows nothing of tasks.
 */
export interface Driver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;

  /** The entry at `path`, or `null` when nothing is there. */
  stat(path: string): Promise<Entry | null>;

  /** The children of the folder `path`. `E_NOT_FOUND` when absent, `E_NOT_A_DIRECTORY` for a file. */
  list(path: string): Promise<Entry[]>;

  /**
   * Optional: the files below the folder `path` and their bytes, as a walk of `list` would count
   * them, in fewer round trips. `E_NOT_FOUND`, `E_NOT_A_DIRECTORY`.
   */
  measure?(path: string, options?: MeasureOptions): Promise<{ files: number; bytes: number }>;

  /**
   * Optional: every entry below the folder `path` (not `path` itself), each folder before what
   * it holds, as a walk of `list` would meet them, in fewer round trips (S3: one flat listing
   * instead of one per folder). `rel` is the entry's path relative to `path`, starting with `/`.
   * Drivers with links do not offer it. `E_NOT_FOUND`, `E_NOT_A_DIRECTORY`.
   */
  walk?(path: string, signal: AbortSignal): AsyncIterable<{ entry: Entry; rel: string }>;

  /** A stream of the file's bytes (or a byte range). `E_NOT_FOUND`, `E_IS_A_DIRECTORY`. */
  read(path: string, options?: ReadOptions): Promise<Readable>;

  /**
   * Write a whole file from `source`. The bytes go to a temporary name that is renamed into place
   * only when complete, so a failed or aborted write leaves nothing under `path`. Parent folders
   * are created. `E_EXISTS` when `path` exists and `overwrite` is not set.
   */
  write(path: string, source: Readable, options?: WriteOptions): Promise<void>;

  /**
   * Optional: write a file of known `size` by reading byte ranges of it with `readInto`, several
   * at once, with the same guarantees as `write`. `copyBetween` offers it for large files whose
   * source can read ranges; a driver that uploads in parts (S3) reads each part into a buffer it
   * reuses, rather than piping a stream per part or allocating a buffer per part.
   */
  writeRanges?(path: string, size: number, readInto: ReadInto, options?: WriteOptions): Promise<void>;

  /** Create the folder and its parents; no error when it exists already as a folder. */
  mkdir(path: string): Promise<void>;

  /** Rename within this driver. `E_NOT_FOUND` for a missing source, `E_EXISTS` unless `overwrite`. */
  rename(from: string, to: string, options?: { overwrite?: boolean }): Promise<void>;

  /** Server-side copy of one file; only called when `capabilities.serverSideCopy`. */
  copy(from: string, to: string, options?: WriteOptions): Promise<void>;

  /**
   * Remove a file or a whole folder tree. No error when nothing is there. With `file`, the caller
   * knows `path` is a file, and a driver may skip looking for a tree below it (S3: one listing).
   */
  remove(path: string, options?: { signal?: AbortSignal; file?: boolean }): Promise<void>;

  /**
   * Optional: remove the folder `path` and everything below it in fewer round trips than a walk
   * of `list` and a `remove` per file (S3: one flat listing and a DeleteObjects per 1,000 keys).
   * Each file is reported to `removed` or, when it could not be removed, to `failed` (driver
   * paths); a folder that still holds such a file stays. Hidden names (temp files, folder
   * markers) go too, unreported. Checks `signal` between requests. `E_NOT_FOUND`,
   * `E_NOT_A_DIRECTORY`, `E_FORBIDDEN` for the root.
   */
  removeTree?(path: string, options: RemoveTreeOptions): Promise<void>;

  /**
   * The absolute local file-system path behind `path`, for drivers that have one (Local); `null`
   * for remote drivers. For the storage layer only (`copyBetween`, `linkInto`, `StagedTree`,
   * `extractTo`), which chooses its fast paths by it: task kinds and dialects never call it.
   * With `newName`, what is at `path` itself is not looked at (its folders still are): for a
   * caller that creates the name without following a link there (`link`, `rename`, `O_EXCL`),
   * and would only make the lookup of a name being created wait on the folder's lock.
   */
  localPath(path: string, options?: { newName?: boolean }): string | null;

  /** Bytes free for new data at `path`, or `null` when the backend cannot tell (object stores). */
  freeSpace(path: string): Promise<number | null>;

  /** Release connections; the driver is not used afterwards. */
  close(): Promise<void>;
}

/** `E_BAD_REQUEST` unless start/end are non-negative integers with start ≤ end. */
export function checkRange({ start, end }: ReadOptions): void {
  const bad = (n: number | undefined) => n !== undefined && !(Number.isSafeInteger(n) && n >= 0);
  if (bad(start) || bad(end) || (start !== undefined && end !== undefined && start > end)) {
    throw new FerryError('E_BAD_REQUEST', `invalid byte range ${start}-${end}`);
  }
}
