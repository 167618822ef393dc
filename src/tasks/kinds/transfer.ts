import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.ts';
import type { Driver, Entry, MeasureOptions } from '../../storage/driver.ts';
import { joinPath } from '../../storage/paths.ts';
import {
  type CopyResume,
  copyBetween,
  copySmallLocal as copySmall,
  type Endpoint,
} from '../../storage/transfer.ts';
import type { Progress } from '../progress.ts';

/** A file or folder on some driver. */
export type { Endpoint } from '../../storage/transfer.ts';

export interface TransferOptions {
  signal: AbortSignal;
  progress: Progress;
  overwrite: boolean;
  /** The task's id: temp names derive from it, so a resumed task replaces its own leftovers. */
  tempKey: string;
  /** Flush a local destination to disk before it takes its name; false leaves that to the OS. */
  sync: boolean;
  /**
   * Awaited right before the file takes its final name: a task passes `ctx.fence`, so a node
   * paused past its lease places nothing once another holds the task.
   */
  beforePlace: () => Promise<void>;
  /** Make the copy resumable by the attempt after this one where it can be (`CopyResume`). */
  resume?: CopyResume;
  /** Whether this attempt still holds the task (`ctx.holds`): a lost task's temp is not removed. */
  ownsTemp?: () => Promise<boolean>;
}

/**
 * Copy one file to `dst`, atomically: nothing appears under `dst.path` until every byte is there.
 * The storage layer picks the way (`copyBetween`); the task only counts the bytes. `E_EXISTS`
 * when `dst` exists and not `overwrite`.
 */
export function transferFile(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  options: TransferOptions,
): Promise<void> {
  const { progress, ...rest } = options;
  return copyBetween(src, dst, size, { ...rest, onProgress: (n) => progress.addBytes(n) });
}

/**
 * `transferFile` of a small file between two local mounts in one step (see `copySmallLocal`);
 * false, having done nothing, for a larger file or a remote end.
 */
export function copySmallLocal(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  options: Omit<TransferOptions, 'signal'>,
): Promise<boolean> {
  const { progress, ...rest } = options;
  return copySmall(src, dst, size, { ...rest, onProgress: (n) => progress.addBytes(n) });
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
 * once the signal aborts, and rethrows the first error `work` throws, or the source's. It never
 * settles while work is in flight, whatever ends it: a walk that throws on a cancel must not let
 * the task end while a copy it started still writes.
 */
export async function forEachLimit<T>(
  source: AsyncIterable<T> | Iterable<T>,
  limit: number,
  signal: AbortSignal,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  try {
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
  } finally {
    // The promises in flight never reject (their errors go to `failure`).
    await Promise.all(inFlight);
  }
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
