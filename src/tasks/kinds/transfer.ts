import { createHash } from 'node:crypto';
import { link, rename, unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { FerryError, fromFsError } from '../../errors.ts';
import { fileThreads, WriteFailure } from '../../io/file-threads.ts';
import type { Driver, Entry, MeasureOptions } from '../../storage/driver.ts';
import { copyLocalFile } from '../../storage/local/fast-copy.ts';
import { joinPath, tempPathFor } from '../../storage/paths.ts';
import type { Progress } from '../progress.ts';
import { fetchRangesInto, RANGED_FETCH_MIN, rangeReaderOf } from './ranged-fetch.ts';

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

/** A file or folder on some driver. */
export interface Endpoint {
  driver: Driver;
  path: string;
}

export interface TransferOptions {
  signal: AbortSignal;
  progress: Progress;
  overwrite: boolean;
  /** The task's id: temp names derive from it, so a resumed task replaces its own leftovers. */
  tempKey: string;
  /** Flush a local destination to disk before it takes its name; false leaves that to the OS. */
  sync: boolean;
}

/**
 * Copy one file to `dst`, atomically: nothing appears under `dst.path` until every byte is
 * there. Between two local mounts the bytes go through a double-buffered file copy; on one
 * driver with a server-side copy, the backend copies; a large remote file bound for a local mount
 * is fetched as parallel ranges, and a file bound for a driver that uploads in parts (S3) is sent
 * as parallel ranges of the source (see RANGED_WRITE_MIN); otherwise the source stream is piped
 * into the destination driver with back-pressure. `E_EXISTS` when `dst` exists and not `overwrite`.
 */
export async function transferFile(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  options: TransferOptions,
): Promise<void> {
  const { signal, progress, overwrite, sync } = options;
  signal.throwIfAborted();
  if (await copySmallLocal(src, dst, size, options)) return;
  const srcLocal = src.driver.localPath(src.path);
  const dstLocal = dst.driver.localPath(dst.path);
  const onProgress = (n: number) => progress.addBytes(n);
  if (srcLocal && dstLocal) {
    await writeLocalAtomically(dstLocal, { overwrite, tempKey: options.tempKey }, (temp) =>
      copyLocalFile(srcLocal, temp, { signal, onProgress, sizeHint: size, sync }),
    );
    return;
  }
  if (src.driver === dst.driver && src.driver.capabilities.serverSideCopy) {
    await dst.driver.copy(src.path, dst.path, { signal, overwrite, size, tempKey: options.tempKey, sync });
    progress.addBytes(size);
    return;
  }
  if (dstLocal && src.driver.capabilities.rangeRead && size >= RANGED_FETCH_MIN) {
    await writeLocalAtomically(dstLocal, { overwrite, tempKey: options.tempKey }, (temp) =>
      fetchRangesInto(src, temp, size, { signal, onProgress, sync }),
    );
    return;
  }
  const writeOptions = { tempKey: options.tempKey, signal, overwrite, size, onProgress, sync };
  const ranged = size > 0 && (srcLocal !== null || size >= RANGED_WRITE_MIN);
  if (dst.driver.writeRanges && src.driver.capabilities.rangeRead && ranged) {
    await dst.driver.writeRanges(dst.path, size, rangeReaderOf(src), writeOptions);
    return;
  }
  const stream = await src.driver.read(src.path, { signal });
  await dst.driver.write(dst.path, stream, writeOptions);
}

/**
 * Let `fill` write the file's bytes under a temp name beside `dst` (and fsync them if asked),
 * then put it in place: `rename` when overwriting, else `link` + `unlink`, which refuses an
 * existing name atomically. On any failure the temp file is removed and nothing appears under `dst`.
 */
async function writeLocalAtomically(
  dst: string,
  options: { overwrite: boolean; tempKey: string },
  fill: (temp: string) => Promise<void>,
): Promise<void> {
  const temp = tempPathFor(dst, options.tempKey);
  try {
    await fill(temp);
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
 * `transferFile` of a file of at most `SMALL_LOCAL_COPY` bytes between two local mounts, done by
 * a small-file thread in one message (`fileThreads.copy`: copy to the temp name, fsync unless
 * `sync` is false, put in place): false, having done nothing, for a larger file or a remote end.
 * The thread also finds out whether the name is taken (`link` refuses it; with `overwrite`, a
 * folder there is refused), so nothing here looks the new name up: on this thread, that lookup
 * waits on the folder's lock while the threads create files in it. The caller has made the
 * destination folder.
 */
export async function copySmallLocal(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  options: Omit<TransferOptions, 'signal'>,
): Promise<boolean> {
  const paths = smallLocalCopy(src, dst, size, options.tempKey);
  if (!paths) return false;
  try {
    await fileThreads.copy(paths.from, paths.temp, paths.to, options);
  } catch (err) {
    throw err instanceof WriteFailure ? smallCopyError(err, src, dst) : err;
  }
  options.progress.addBytes(size);
  return true;
}

/**
 * The local paths of a copy of at most `SMALL_LOCAL_COPY` bytes between two local mounts: the
 * source, the destination (its folders checked, the name itself not looked up) and the temp name
 * beside it derived from `tempKey`; null for a larger file or a remote end.
 */
function smallLocalCopy(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  tempKey: string,
): { from: string; to: string; temp: string } | null {
  if (size > SMALL_LOCAL_COPY) return null;
  const from = src.driver.localPath(src.path);
  const to = from && dst.driver.localPath(dst.path, { newName: true });
  if (!from || !to) return null;
  return { from, to, temp: tempPathFor(to, tempKey) };
}

/** The error to report for a small-file thread's failure to copy `src` to `dst`. */
export function smallCopyError(failure: WriteFailure, src: Endpoint, dst: Endpoint): Error {
  if (failure.code === 'EINWAY') return new FerryError('E_EXISTS', `a folder is in the way: ${dst.path}`);
  // The failing call may be about either file.
  return fromFsError(failure, failure.code === 'ENOENT' ? src.path : dst.path);
}

/** Remove the temp file a task's interrupted write to `dst` may have left (local drivers only). */
export async function removeOwnTemp(dst: Endpoint, taskId: string): Promise<void> {
  const local = dst.driver.localPath(dst.path);
  if (local) await unlink(tempPathFor(local, taskId)).catch(() => undefined);
}

/** True when both files hold the same bytes (size first, then SHA-256 of each). */
export async function sameContent(a: Endpoint, b: Endpoint, signal: AbortSignal): Promise<boolean> {
  const [sa, sb] = await Promise.all([a.driver.stat(a.path), b.driver.stat(b.path)]);
  if (!sa || !sb || sa.isDir || sb.isDir || sa.size !== sb.size) return false;
  const [ha, hb] = await Promise.all([
    hashOf(await a.driver.read(a.path, { signal })),
    hashOf(await b.driver.read(b.path, { signal })),
  ]);
  return ha === hb;
}

async function hashOf(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** One entry met while walking a tree, with its path relative to the walk's root. */
export interface WalkItem {
  entry: Entry;
  /** Relative path below the root, starting with `/`. */
  rel: string;
  /**
   * Reached through a followed link to a folder (`Entry.link`): its path leads out of the tree
   * being walked, so nothing may be deleted at it (a move copies it but deletes only the link).
   */
  viaLink: boolean;
}

/** What a tree walk does when a folder below its root cannot be listed (the root's failure throws). */
export type Unreadable = (rel: string, err: unknown) => void;

/**
 * Depth-first walk below `root` (not including it), folders before their contents. Memory holds
 * one listing per level, never the whole tree. A folder below the root that cannot be listed (no
 * permission, a link loop, gone since its parent was listed) is passed to `unreadable` and not
 * walked, so one bad folder does not stop the walk; without `unreadable` its error is thrown.
 * A driver with its own `walk` (S3) is walked by it: the same entries in fewer requests.
 */
export function walkTree(
  driver: Driver,
  root: string,
  signal: AbortSignal,
  unreadable?: Unreadable,
): AsyncGenerator<WalkItem> {
  if (driver.walk) return walkByDriver(driver.walk(root, signal), signal);
  return walkFolder(driver, root, signal, unreadable, '/', false);
}

async function* walkByDriver(
  items: AsyncIterable<{ entry: Entry; rel: string }>,
  signal: AbortSignal,
): AsyncGenerator<WalkItem> {
  for await (const { entry, rel } of items) {
    signal.throwIfAborted();
    yield { entry, rel, viaLink: false };
  }
}

async function* walkFolder(
  driver: Driver,
  root: string,
  signal: AbortSignal,
  unreadable: Unreadable | undefined,
  rel: string,
  viaLink: boolean,
): AsyncGenerator<WalkItem> {
  signal.throwIfAborted();
  let entries: Entry[];
  try {
    entries = await driver.list(rel === '/' ? root : joinPath(root, rel));
  } catch (err) {
    if (rel === '/' || !unreadable || signal.aborted) throw err;
    unreadable(rel, err);
    return;
  }
  for (const entry of entries) {
    const childRel = joinPath(rel, entry.name);
    yield { entry, rel: childRel, viaLink };
    if (entry.isDir)
      yield* walkFolder(driver, root, signal, unreadable, childRel, viaLink || entry.link === true);
  }
}

/**
 * Files and bytes below `root`, for a directory task's totals. With `linksAsFiles` (a delete's
 * totals), a followed link counts as one empty file and is not walked through.
 */
export async function measureTree(
  driver: Driver,
  root: string,
  signal: AbortSignal,
  options: MeasureOptions = {},
): Promise<{ files: number; bytes: number }> {
  if (driver.measure) {
    signal.throwIfAborted();
    return driver.measure(root, options);
  }
  let files = 0;
  let bytes = 0;
  // What cannot be listed cannot be counted: the walk that copies or deletes reports it.
  for await (const { entry, viaLink } of walkTree(driver, root, signal, () => undefined)) {
    if (options.linksAsFiles && viaLink) continue;
    if (!entry.isDir || (options.linksAsFiles && entry.link)) {
      files++;
      bytes += entry.isDir ? 0 : entry.size;
    }
  }
  return { files, bytes };
}

/**
 * Run `work` over items from `source` with at most `limit` in flight; stops taking new items
 * once the signal aborts, and rethrows the first error `work` throws.
 */
export async function forEachLimit<T>(
  source: AsyncIterable<T> | Iterable<T>,
  limit: number,
  signal: AbortSignal,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  for await (const item of source) {
    if (failure !== null || signal.aborted) break;
    const p: Promise<void> = work(item)
      .catch((err) => {
        failure ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= limit) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== null) throw failure;
  signal.throwIfAborted();
}

/** A message for an item failure, with the error's code when it is ours. */
export function itemError(err: unknown): string {
  if (err instanceof FerryError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The failed items of a directory task (copy, move, delete), which goes on past each one, and
 * the error it ends with: retried when any failure might pass, else the first definite code.
 */
export class ItemFailures {
  count = 0;
  private recoverable = false;
  private code: FerryError['code'] | null = null;

  constructor(
    private readonly progress: Progress,
    private readonly signal: AbortSignal,
  ) {}

  /** Record `err` for the item at `rel`; once canceled, rethrow it instead (the task stops). */
  readonly add = (rel: string, err: unknown): void => {
    if (this.signal.aborted) throw err;
    this.progress.itemFailed(rel, itemError(err));
    this.count++;
    if (err instanceof FerryError && err.unrecoverable) this.code ??= err.code;
    else this.recoverable = true;
  };

  /** Throw the task's error when an item failed; `what` says it ("3 items failed"). */
  throwIfAny(what: (count: number) => string): void {
    if (this.count === 0) return;
    // The runner adds the first failure to the message.
    throw new FerryError(this.recoverable || !this.code ? 'E_BACKEND' : this.code, what(this.count));
  }
}

/** "1 item", "2 items". */
export function items(count: number): string {
  return `${count} ${count === 1 ? 'item' : 'items'}`;
}
