import { link, rename, stat, unlink, utimes } from 'node:fs/promises';
import { FerryError, fromFsError } from '../errors.ts';
import { detachFile } from '../io/detach-file.ts';
import { fileThreads, WriteFailure } from '../io/file-threads.ts';
import type { Endpoint } from './driver.ts';
import { copyLocalFile } from './local/fast-copy.ts';
import { parentPath, tempPathFor } from './paths.ts';
import { fetchRangesInto, RANGED_FETCH_MIN, rangeReaderOf } from './ranged-fetch.ts';

export type { Endpoint } from './driver.ts';

/**
 * Local files up to this size are copied by a small-file thread in one step (copy, fsync, put in
 * place): a tiny copy is made of system calls, each a thread-pool round trip otherwise.
 */
export const SMALL_LOCAL_COPY = 256 * 1024;

/**
 * A remote file this large or larger (one S3 part) goes to a `writeRanges` destination range by
 * range, a request each; a local one of any size does.
 */
const RANGED_WRITE_MIN = 5 * 1024 * 1024;

export interface CopyOptions {
  signal: AbortSignal;
  /** Called with the number of bytes written since the previous call. */
  onProgress: (bytes: number) => void;
  overwrite: boolean;
  /** Temp names derive from it, so a resumed copy replaces its own leftovers (a task's id). */
  tempKey: string;
  /** Flush a local destination to disk before it takes its name; false leaves that to the OS. */
  sync: boolean;
  /** The copy's modification time, ms since the epoch, where the destination keeps one (`WriteOptions.modified`). */
  modified?: number;
  /** Awaited right before the file takes its final name (`WriteOptions.beforePlace`). */
  beforePlace?: () => Promise<void>;
  /**
   * Asked before a failed copy into a local mount removes its temp file, whose name `tempKey`
   * gives: false means this attempt lost its task to another, whose temp that name is now, and
   * leaves it alone. Without it, or when it cannot tell (a rejection), the temp is removed: at
   * worst the new holder's placing then fails and its attempt is retried.
   */
  ownsTemp?: () => Promise<boolean>;
  /**
   * Make the copy resumable by a later attempt (another node's, after a takeover) where it can
   * be: see `CopyResume`.
   */
  resume?: CopyResume;
}

/**
 * How an interrupted copy continues where it stood. Supported for a file of at least
 * `RESUMABLE_MIN` bytes from a remote source that reads ranges into a local mount (between two
 * local mounts the kernel copies at disk speed: that copy starts over): its temp file (named by
 * `tempKey`, beside the destination, so on a shared mount every node sees it) keeps what was
 * fetched, the copy records now and then how much of it is on disk, and the next attempt fetches
 * only the rest, with ranges. Other copies start again from the first byte.
 */
export interface CopyResume {
  /** What an earlier attempt of this copy recorded, if anything. */
  earlier?: CopyCheckpoint;
  /** Record how far the copy got; a rejection (a lost lease) stops the copy. */
  save(checkpoint: CopyCheckpoint): Promise<void>;
}

export interface CopyCheckpoint {
  /** The source's size and modification time when the copy began: a changed source starts over. */
  size: number;
  modified: number;
  /** The first `done` bytes are in the temp file and on disk. */
  done: number;
}

/** Files smaller than this are copied again whole after an interruption: no checkpoints. */
export const RESUMABLE_MIN = 1024 * 1024;

/**
 * Copy one file from one driver to another (or the same), atomically: nothing appears under
 * `dst.path` until every byte is there. The strategy follows what the two ends can do, so callers
 * never branch on the backend they hold:
 * - two local mounts: a small file in one step on a small-file thread, a larger one through a
 *   double-buffered (or in-kernel) file copy;
 * - one driver with a server-side copy: the backend copies;
 * - a large file that can be read by ranges, bound for a local mount: parallel ranges written at
 *   their offsets;
 * - a destination that uploads in parts (`writeRanges`, S3): parallel ranges of the source;
 * - otherwise the source stream piped into the destination's `write`, with back-pressure.
 * The caller has made the folder `dst` goes into. `E_EXISTS` when `dst` exists and not
 * `overwrite`.
 */
export async function copyBetween(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  options: CopyOptions,
): Promise<void> {
  const { signal, onProgress, overwrite, sync, tempKey, modified, beforePlace, ownsTemp } = options;
  signal.throwIfAborted();
  if (modified === undefined && (await copySmallLocal(src, dst, size, options))) return;
  const srcLocal = src.driver.localPath(src.path);
  const dstLocal = dst.driver.localPath(dst.path);
  const atomically = {
    overwrite,
    tempKey,
    ...(modified !== undefined && { modified }),
    ...(beforePlace && { beforePlace }),
    ...(ownsTemp && { ownsTemp }),
  };
  if (srcLocal && dstLocal) {
    await writeLocalAtomically(dstLocal, atomically, (temp) =>
      copyLocalFile(srcLocal, temp, { signal, onProgress, sizeHint: size, sync }),
    );
    return;
  }
  if (src.driver === dst.driver && src.driver.capabilities.serverSideCopy && modified === undefined) {
    await dst.driver.copy(src.path, dst.path, {
      signal,
      overwrite,
      size,
      tempKey,
      sync,
      ...(beforePlace && { beforePlace }),
    });
    onProgress(size);
    return;
  }
  if (dstLocal && src.driver.capabilities.rangeRead && options.resume && size >= RESUMABLE_MIN) {
    await fetchResumably(src, dstLocal, size, atomically, { signal, onProgress, sync }, options.resume);
    return;
  }
  if (dstLocal && src.driver.capabilities.rangeRead && size >= RANGED_FETCH_MIN) {
    await writeLocalAtomically(dstLocal, atomically, (temp) =>
      fetchRangesInto(src, temp, size, { signal, onProgress, sync }),
    );
    return;
  }
  const writeOptions = {
    tempKey,
    signal,
    overwrite,
    size,
    onProgress,
    sync,
    ...(modified !== undefined && { modified }),
    ...(beforePlace && { beforePlace }),
  };
  const ranged = size > 0 && (srcLocal !== null || size >= RANGED_WRITE_MIN);
  if (dst.driver.writeRanges && src.driver.capabilities.rangeRead && ranged) {
    await dst.driver.writeRanges(dst.path, size, rangeReaderOf(src), writeOptions);
    return;
  }
  const stream = await src.driver.read(src.path, { signal });
  // The destination's write reports the stream's errors once it pipes it, after a lookup or two;
  // an abort in between errors the stream with no listener yet, which would end the process.
  stream.on('error', () => undefined);
  await dst.driver.write(dst.path, stream, writeOptions);
}

/**
 * `copyBetween` of a remote file into a local mount that an attempt after this one can continue
 * (see `CopyResume`): the ranges are fetched into the task's temp file with a checkpoint about
 * every second, and an earlier attempt's temp is continued from its last checkpoint when the
 * source is unchanged. The temp outlives an attempt that died (a node killed or paused); one that
 * failed or stopped cleanly removes it as every copy does, and the next starts over.
 */
async function fetchResumably(
  src: Endpoint,
  dst: string,
  size: number,
  atomically: PlaceOptions,
  fetch: { signal: AbortSignal; onProgress: (bytes: number) => void; sync: boolean },
  resume: CopyResume,
): Promise<void> {
  const entry = await src.driver.stat(src.path);
  if (!entry || entry.isDir) throw new FerryError('E_NOT_FOUND', `not found: ${src.path}`);
  const stamp = { size, modified: entry.modified };
  const { earlier } = resume;
  let from = 0;
  const prepare = async (temp: string) => {
    const usable =
      earlier &&
      earlier.size === size &&
      earlier.modified === entry.modified &&
      earlier.done > 0 &&
      earlier.done <= size;
    // Kept only when the temp holds at least what the checkpoint says is on disk.
    const kept = usable ? await detachFile(temp) : null;
    if (usable && kept !== null && kept >= earlier.done) from = earlier.done;
    else await freshTemp(temp);
  };
  await writeLocalAtomically(
    dst,
    atomically,
    (temp) =>
      fetchRangesInto(src, temp, size, {
        ...fetch,
        from,
        checkpoint: (done) => resume.save({ ...stamp, done }),
      }),
    prepare,
  );
}

/** How a file is put in place (`writeLocalAtomically`). */
interface PlaceOptions {
  overwrite: boolean;
  tempKey: string;
  modified?: number;
  beforePlace?: () => Promise<void>;
  ownsTemp?: () => Promise<boolean>;
}

/**
 * A new temp file for this attempt: another attempt with the same key (this task, on a node paused
 * past its lease) may still hold the old one open, so a new inode, not the old one truncated,
 * and its late writes land in a file nobody places.
 */
async function freshTemp(temp: string): Promise<void> {
  await unlink(temp).catch(() => undefined);
}

/**
 * Let `fill` write the file's bytes under a temp name beside `dst` (and fsync them if asked),
 * then put it in place: `rename` when overwriting, else `link` + `unlink`, which refuses an
 * existing name atomically. `prepare` readies the temp name first (by default: nothing there). On
 * any failure the temp file is removed, unless this attempt lost its task (`ownsTemp`), and
 * nothing appears under `dst`.
 */
async function writeLocalAtomically(
  dst: string,
  options: PlaceOptions,
  fill: (temp: string) => Promise<void>,
  prepare: (temp: string) => Promise<void> = freshTemp,
): Promise<void> {
  const temp = tempPathFor(dst, options.tempKey);
  await prepare(temp);
  try {
    await fill(temp);
    if (options.modified !== undefined) await utimes(temp, options.modified / 1000, options.modified / 1000);
    await options.beforePlace?.();
    if (options.overwrite) {
      await rename(temp, dst);
    } else {
      await link(temp, dst);
      await unlink(temp);
    }
  } catch (err) {
    const owned = options.ownsTemp ? await options.ownsTemp().catch(() => true) : true;
    if (owned) await unlink(temp).catch(() => undefined);
    throw err instanceof FerryError ? err : fromFsError(err, dst);
  }
}

/**
 * `copyBetween` of a file of at most `SMALL_LOCAL_COPY` bytes between two local mounts, done by
 * a small-file thread in one message (copy to the temp name, fsync unless `sync` is false, put in
 * place): false, having done nothing, for a larger file or a remote end. The thread also finds
 * out whether the name is taken (`link` refuses it; with `overwrite`, a folder there is refused),
 * so nothing here looks the new name up: on this thread, that lookup waits on the folder's lock
 * while the threads create files in it. The caller has made the destination folder.
 */
export async function copySmallLocal(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  options: Omit<CopyOptions, 'signal' | 'modified'>,
): Promise<boolean> {
  if (size > SMALL_LOCAL_COPY) return false;
  const from = src.driver.localPath(src.path);
  const to = from && dst.driver.localPath(dst.path, { newName: true });
  if (!from || !to) return false;
  // The thread copies and places in one message: the check comes before it, a small file's copy
  // earlier than elsewhere.
  await options.beforePlace?.();
  try {
    await fileThreads.copy(from, tempPathFor(to, options.tempKey), to, options);
  } catch (err) {
    throw err instanceof WriteFailure ? smallCopyError(err, src, dst) : err;
  }
  options.onProgress(size);
  return true;
}

/** The error to report for a small-file thread's failure to copy `src` to `dst`. */
export function smallCopyError(failure: WriteFailure, src: Endpoint, dst: Endpoint): Error {
  if (failure.code === 'EINWAY') return new FerryError('E_EXISTS', `a folder is in the way: ${dst.path}`);
  // The failing call may be about either file.
  return fromFsError(failure, failure.code === 'ENOENT' ? src.path : dst.path);
}

/**
 * Remove the temp file an interrupted copy to `dst` keyed by `tempKey` may have left: on a local
 * mount a crash between placing a file by link and removing its temp name leaves that name behind.
 * Remote drivers keep no such leftover under the final folder's listing.
 */
export async function removeTemp(dst: Endpoint, tempKey: string): Promise<void> {
  const local = dst.driver.localPath(dst.path);
  if (local) await unlink(tempPathFor(local, tempKey)).catch(() => undefined);
}

/** Errors of a link or rename that mean "not possible here, copy the bytes instead". */
const CANNOT_LINK = new Set(['EXDEV', 'EPERM', 'EMLINK']);

/**
 * Put the file `src` in place at `dst` by a hard link, without copying a byte, when both are on
 * one local file system; false, having done nothing, when they are not (a remote end, another
 * file system), so the caller copies instead. `src` stays as it is (an upload keeps its spool
 * until success is recorded). With `overwrite` the link goes to a temp name that is then renamed
 * over `dst`; without, `link` refuses a taken name atomically (`E_EXISTS`), except that a link
 * already in place to `src` itself (a resumed task's) counts as placed. `modified` becomes the
 * file's time (shared with `src`: one inode).
 */
export async function linkInto(
  src: Endpoint,
  dst: Endpoint,
  options: { overwrite: boolean; tempKey: string; modified?: number; beforePlace?: () => Promise<void> },
): Promise<boolean> {
  const from = src.driver.localPath(src.path);
  const target = from && dst.driver.localPath(dst.path);
  if (!from || !target) return false;
  await dst.driver.mkdir(parentPath(dst.path));
  await options.beforePlace?.();
  if (options.modified !== undefined) await utimes(from, options.modified / 1000, options.modified / 1000);
  try {
    if (options.overwrite) {
      const temp = tempPathFor(target, options.tempKey);
      await unlink(temp).catch(() => undefined); // left by an attempt that died here
      await link(from, temp);
      await renameLink(temp, target).catch(async (err) => {
        await unlink(temp).catch(() => undefined);
        throw err;
      });
    } else {
      await link(from, target);
    }
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (CANNOT_LINK.has(code)) return false;
    if (code === 'EEXIST') {
      const [a, b] = await Promise.all([stat(from), stat(target)]);
      if (a.ino === b.ino && a.dev === b.dev) return true;
    }
    throw fromFsError(err, dst.path);
  }
}

/**
 * Move the file or folder `src` to `dst`, replacing a file there, without copying a byte, when
 * both are on one local file system: a rename, or with `keepSource` a hard link to a temp name
 * renamed over `dst` (the source stays). False, having done nothing, when that is not possible (a
 * remote end, another file system, a folder already at `dst`, or a folder to keep), so the caller
 * copies instead.
 */
export async function moveInto(
  src: Endpoint,
  dst: Endpoint,
  options: { keepSource: boolean; tempKey: string; beforePlace?: () => Promise<void> },
): Promise<boolean> {
  const from = src.driver.localPath(src.path);
  const target = from && dst.driver.localPath(dst.path);
  if (!from || !target) return false;
  await options.beforePlace?.();
  const fallBack = (err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (['EXDEV', 'EPERM', 'EMLINK', 'ENOTEMPTY', 'EEXIST', 'EISDIR', 'ENOTDIR'].includes(code ?? ''))
      return false;
    throw fromFsError(err, dst.path);
  };
  if (!options.keepSource) return rename(from, target).then(() => true, fallBack);
  if ((await stat(from)).isDirectory()) return false;
  const temp = tempPathFor(target, options.tempKey);
  await unlink(temp).catch(() => undefined);
  try {
    await link(from, temp);
  } catch (err) {
    return fallBack(err);
  }
  try {
    await renameLink(temp, target);
    return true;
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    return fallBack(err);
  }
}

/**
 * Rename the hard link `temp` over `target`. When `target` is already a link to the same file (an
 * earlier attempt of the task placed it and died before recording that), `rename` does nothing
 * and succeeds, as POSIX says, and the temp name would stay behind: it is removed then.
 */
async function renameLink(temp: string, target: string): Promise<void> {
  await rename(temp, target);
  await unlink(temp).catch(() => undefined);
}
