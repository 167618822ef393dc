import { link, rename, stat, unlink, utimes } from 'node:fs/promises';
import { FerryError, fromFsError } from '../errors.ts';
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
}

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
  const { signal, onProgress, overwrite, sync, tempKey, modified, beforePlace } = options;
  signal.throwIfAborted();
  if (modified === undefined && (await copySmallLocal(src, dst, size, options))) return;
  const srcLocal = src.driver.localPath(src.path);
  const dstLocal = dst.driver.localPath(dst.path);
  const atomically = {
    overwrite,
    tempKey,
    ...(modified !== undefined && { modified }),
    ...(beforePlace && { beforePlace }),
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
 * Let `fill` write the file's bytes under a temp name beside `dst` (and fsync them if asked),
 * then put it in place: `rename` when overwriting, else `link` + `unlink`, which refuses an
 * existing name atomically. On any failure the temp file is removed and nothing appears under `dst`.
 */
async function writeLocalAtomically(
  dst: string,
  options: { overwrite: boolean; tempKey: string; modified?: number; beforePlace?: () => Promise<void> },
  fill: (temp: string) => Promise<void>,
): Promise<void> {
  const temp = tempPathFor(dst, options.tempKey);
  // Another attempt with the same key (this task, on a node paused past its lease) may still
  // hold this temp file open: a new inode, not the old one truncated, so its late writes land in
  // a file nobody places.
  await unlink(temp).catch(() => undefined);
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
    await unlink(temp).catch(() => undefined);
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
      await rename(temp, target).catch(async (err) => {
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
    await rename(temp, target);
    return true;
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    return fallBack(err);
  }
}
