/**
 * What the small-file pool (`FileThreads`, file-threads.ts) and each of its threads
 * (file-thread.ts) say to each other: one request per operation, answered by exactly one reply
 * with the same `id`. Both sides import these types, so neither can send a field the other does
 * not read.
 */

/** Where a file written or copied under its temp name is put once complete. */
export interface Placement {
  /** Temp name beside `final`; never followed when it is a link. */
  temp: string;
  final: string;
  /** Replace an existing file at `final` (never a folder); otherwise an existing name fails. */
  overwrite: boolean;
}

/** A local file to copy to a temp name. */
export interface Staging {
  from: string;
  temp: string;
}

export type FileRequest =
  /**
   * Write the first `length` bytes of `buffer` to `temp` (created or emptied, never through a
   * link), fsync it when `sync`, then put it in place. `buffer` is transferred to the thread and
   * comes back in the reply, for the next write.
   */
  | ({ op: 'write'; id: number; buffer: ArrayBuffer; length: number; sync: boolean } & Placement)
  /**
   * Copy the local file `from` to `temp` (a leftover temp file is replaced, never written through),
   * fsync it when `sync`, then put it in place.
   */
  | ({ op: 'copy'; id: number; from: string; sync: boolean } & Placement)
  /**
   * Copy each file as `copy` does, but neither fsync it nor put it in place (a `place` request
   * does that later). A link at `from` is not copied: it fails with `ELOOP`.
   */
  | { op: 'stage'; id: number; items: Staging[] }
  /** Put temp files staged earlier in place, each as a write would be. */
  | { op: 'place'; id: number; items: Placement[] }
  /** List a folder, with each name's lstat. */
  | { op: 'list'; id: number; dir: string }
  /**
   * Count the files below `dir` and their bytes, skipping names that start with `skip`; links
   * are not followed but listed.
   */
  | { op: 'measure'; id: number; dir: string; skip: string }
  /** One `sync -f` of the file system `path` is on; the thread goes on with other requests meanwhile. */
  | { op: 'sync-fs'; id: number; path: string };

/** A name in a listed folder, from its lstat. */
export interface ListedEntry {
  name: string;
  isDir: boolean;
  /** A symbolic link: the other fields are the link's own. */
  isLink: boolean;
  size: number;
  mtimeMs: number;
}

/** Why a file failed: the failing call's errno code (`EINWAY` for a folder in the way). */
export interface FileFailure {
  code: string;
  message: string;
}

export type FileReply =
  /** A `write`, `copy` or `sync-fs` succeeded; a write's buffer comes back. */
  | { op: 'done'; id: number; buffer?: ArrayBuffer }
  /**
   * The request as a whole failed (a `write` or `copy`, whose temp file is then removed; a folder
   * that cannot be listed or measured; a failed `sync -f`); a write's buffer comes back.
   */
  | { op: 'failed'; id: number; failure: FileFailure; buffer?: ArrayBuffer }
  /**
   * For `stage` and `place`: per item, in order, null when done, else why not (that item's temp
   * file is then removed).
   */
  | { op: 'each'; id: number; failures: (FileFailure | null)[] }
  /** For `list`: every name in the folder but those gone before their lstat. */
  | { op: 'listed'; id: number; entries: ListedEntry[] }
  /** For `measure`; `links` are the paths of the links met, relative to `dir`. */
  | { op: 'measured'; id: number; files: number; bytes: number; links: string[] };
