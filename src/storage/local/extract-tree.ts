import { createWriteStream } from 'node:fs';
import { copyFile, link, lstat, mkdir, realpath, rename, unlink } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ExtractionGuard } from '../../archive/guard.ts';
import { FerryError, fromFsError } from '../../errors.ts';
import { syncFileSystem } from '../../io/background-flush.ts';
import { fileThreads, WriteFailure } from '../../io/file-threads.ts';
import { parentPath, tempPathFor } from '../paths.ts';

export interface LocalTreeOptions {
  overwrite: boolean;
  /** The task's id: temp names derive from it, so a retry replaces its own leftovers. */
  tempKey: string;
  signal: AbortSignal;
  guard: ExtractionGuard;
  /** Bytes written since the last call (progress). */
  onBytes(n: number): void;
  /** One file is in place. */
  onFileDone(): void;
  /** A file that could not be placed (exists, a folder in the way); extraction goes on. */
  onItemFailed(rel: string, err: FerryError): void;
  /** Awaited right before each file takes its final name (`WriteOptions.beforePlace`). */
  beforePlace?: () => Promise<void>;
}

/**
 * Files up to this size are handed over whole (`put`) and written in the background, several at
 * a time: an archive of many small files is bound by per-file system calls, not by bytes.
 */
export const BUFFERED_FILE_MAX = 4 << 20;
/** At most this many buffered files, and this many of their bytes, are being written at once. */
const MAX_PENDING_FILES = 8;
const MAX_PENDING_BYTES = 32 << 20;

/** Errors that concern one entry only: the extraction records them and goes on. */
const ITEM_ERRORS = new Set(['E_EXISTS', 'E_IS_A_DIRECTORY', 'E_NOT_A_DIRECTORY']);

/**
 * The folder an archive is extracted into, on the local disk. Entry paths come in already
 * checked (`entryPath`); here every file is written under a temp name next to its final one and
 * renamed (or, without overwrite, linked) into place only when complete, and the real path of
 * each parent folder must stay inside the real root, so a link already present in the
 * destination cannot lead a write elsewhere. No links are ever created.
 */
export class LocalTree {
  /** Folders (relative) already checked to be real folders inside the root. */
  private readonly checkedDirs = new Set<string>();
  /** Background writes of buffered files, and their bytes. */
  private readonly pending = new Set<Promise<void>>();
  private pendingBytes = 0;
  /** The last write of each path still in progress: a later entry of the same name waits for it. */
  private readonly lastWrite = new Map<string, Promise<void>>();
  /** The first error of a background write; every later call throws it. */
  private failure: { err: unknown } | null = null;

  private constructor(
    readonly root: string,
    private readonly realRoot: string,
    private readonly options: LocalTreeOptions,
  ) {}

  static async open(root: string, options: LocalTreeOptions): Promise<LocalTree> {
    await mkdir(root, { recursive: true });
    return new LocalTree(root, await realpath(root), options);
  }

  /**
   * Make everything written so far durable: one `sync -f` (syncfs(2)) of the file system the
   * tree is on, instead of an fsync per extracted file, which would cost more than the writes.
   */
  async flush(): Promise<void> {
    await this.settle();
    await syncFileSystem(this.root, this.options.signal);
  }

  /** Absolute path of a relative entry path. */
  abs(rel: string): string {
    return rel === '/' ? this.root : join(this.root, ...rel.split('/').filter(Boolean));
  }

  async dir(rel: string): Promise<void> {
    this.throwIfFailed();
    this.options.guard.entry();
    await this.mkdirInside(rel);
  }

  /**
   * Write a file whose bytes are all in memory (at most `BUFFERED_FILE_MAX`; `data` must not be
   * used afterwards). A small-file thread writes it in the background: this returns as soon as
   * there is room among the writes in progress, and `settle()` waits for them. A name that is
   * taken (without overwrite) or a folder in the way is recorded as a failed entry.
   */
  async put(rel: string, data: Buffer): Promise<void> {
    this.throwIfFailed();
    const { guard, onBytes, onFileDone, overwrite, tempKey } = this.options;
    guard.entry();
    const size = data.length;
    guard.wrote(size);
    while (
      this.pending.size >= MAX_PENDING_FILES ||
      (this.pending.size > 0 && this.pendingBytes + size > MAX_PENDING_BYTES)
    )
      await Promise.race(this.pending);
    this.throwIfFailed();
    this.options.signal.throwIfAborted();
    const final = this.abs(rel);
    const write = this.serially(rel, async () => {
      try {
        await this.mkdirInside(parentPath(rel));
        // The thread writes and places in one message: the check comes before it.
        await this.options.beforePlace?.();
        await fileThreads.write(tempPathFor(final, tempKey), final, data, {
          overwrite,
        });
      } catch (err) {
        // Entry-only failures are recorded (itemFailed throws the others).
        this.itemFailed(rel, err instanceof WriteFailure ? writeError(err, rel) : err);
        return;
      }
      onFileDone();
      onBytes(size);
    }).catch((err: unknown) => {
      this.failure ??= { err };
    });
    this.pending.add(write);
    this.pendingBytes += size;
    void write.finally(() => {
      this.pending.delete(write);
      this.pendingBytes -= size;
    });
  }

  /** Wait for every background write; throws the first one's error. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.err;
  }

  /** Run `fn` after any write of `rel` still in progress. */
  private serially(rel: string, fn: () => Promise<void>): Promise<void> {
    const before = this.lastWrite.get(rel);
    const run = before ? before.then(fn, fn) : fn();
    const mine = run.catch(() => undefined);
    this.lastWrite.set(rel, mine);
    void mine.then(() => {
      if (this.lastWrite.get(rel) === mine) this.lastWrite.delete(rel);
    });
    return run;
  }

  /**
   * True when a file may be written at `rel`; false (the failure recorded) when one is there and
   * overwrite is off, or a folder is in the way. The caller then skips the entry's bytes.
   */
  async mayWrite(rel: string): Promise<boolean> {
    this.throwIfFailed();
    this.options.guard.entry();
    await this.lastWrite.get(rel);
    return this.checkWritable(rel);
  }

  private async checkWritable(rel: string): Promise<boolean> {
    try {
      const existing = await lstat(this.abs(rel)).catch(() => null);
      if (existing?.isDirectory()) throw new FerryError('E_EXISTS', `a folder is in the way: ${rel}`);
      if (existing && !this.options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${rel}`);
      return true;
    } catch (err) {
      return this.itemFailed(rel, err);
    }
  }

  /** Write `source` to `rel`, counting every byte against the guard. */
  async file(rel: string, source: Readable): Promise<void> {
    // The pipeline below reports the source's errors; until it is set up, nothing may crash.
    source.on('error', () => undefined);
    const { guard, onBytes, signal } = this.options;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        try {
          guard.wrote(chunk.length);
          onBytes(chunk.length);
          done(null, chunk);
        } catch (err) {
          done(err as Error);
        }
      },
    });
    await this.fillAndPlace(rel, (temp) => pipeline(source, counter, createWriteStream(temp), { signal }));
  }

  /**
   * Move a file an external tool extracted (in a staging folder on the same disk, or copy it when
   * not) to `rel`. The caller has counted its bytes already.
   */
  async adopt(rel: string, staged: string): Promise<void> {
    await this.fillAndPlace(rel, (temp) =>
      rename(staged, temp).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EXDEV') throw err;
        await copyFile(staged, temp);
      }),
    );
  }

  /**
   * Let `fill` write the file under a temp name beside `rel`'s final one, then put it in place.
   * An entry-only failure (exists, a folder in the way) is recorded and extraction goes on; any
   * other failure stops it. The temp file never stays behind.
   */
  private async fillAndPlace(rel: string, fill: (temp: string) => Promise<void>): Promise<boolean> {
    const final = this.abs(rel);
    await this.mkdirInside(parentPath(rel));
    const temp = tempPathFor(final, this.options.tempKey);
    try {
      await fill(temp);
      await this.place(temp, final, rel);
      this.options.onFileDone();
      return true;
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      if (err instanceof FerryError && ITEM_ERRORS.has(err.code)) return this.itemFailed(rel, err);
      throw err instanceof FerryError ? err : fromFsError(err, rel);
    }
  }

  /** A hard link inside the archive: a copy of the file already extracted at `target`. */
  async copyOf(rel: string, target: string): Promise<void> {
    await this.settle(); // the target may still be on its way
    const from = this.abs(target);
    const info = await lstat(from).catch(() => null);
    if (!info?.isFile())
      throw new FerryError('E_ARCHIVE_FORMAT', `hard link ${rel} to a missing file ${target}`);
    this.options.guard.wrote(info.size);
    const final = this.abs(rel);
    await this.mkdirInside(parentPath(rel));
    const temp = tempPathFor(final, this.options.tempKey);
    try {
      await copyFile(from, temp);
      await this.place(temp, final, rel);
      this.options.onFileDone();
      this.options.onBytes(info.size);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err instanceof FerryError ? err : fromFsError(err, rel);
    }
  }

  private async place(temp: string, final: string, rel: string): Promise<void> {
    await this.options.beforePlace?.();
    if (this.options.overwrite) {
      const existing = await lstat(final).catch(() => null);
      if (existing?.isDirectory()) throw new FerryError('E_EXISTS', `a folder is in the way: ${rel}`);
      await rename(temp, final);
    } else {
      // link() refuses an existing name atomically, unlike rename().
      await link(temp, final).catch((err) => {
        throw fromFsError(err, rel);
      });
      await unlink(temp);
    }
  }

  private async mkdirInside(rel: string): Promise<void> {
    if (this.checkedDirs.has(rel)) return;
    // Check before creating anything: mkdir -p would follow a link already in the destination
    // and make folders wherever it leads.
    const segments = rel.split('/').filter(Boolean);
    let existing = segments.length;
    while (
      existing > 0 &&
      !(await lstat(this.abs(`/${segments.slice(0, existing).join('/')}`)).catch(() => null))
    )
      existing--;
    await this.checkInside(this.abs(`/${segments.slice(0, existing).join('/')}`), rel);
    if (existing < segments.length) {
      const abs = this.abs(rel);
      try {
        await mkdir(abs, { recursive: true });
      } catch (err) {
        throw fromFsError(err, rel);
      }
      await this.checkInside(abs, rel);
    }
    // Checked once per extraction: ferry itself never creates links here.
    this.checkedDirs.add(rel);
  }

  private async checkInside(abs: string, rel: string): Promise<void> {
    const real = await realpath(abs).catch((err) => {
      throw fromFsError(err, rel);
    });
    if (real !== this.realRoot && !real.startsWith(this.realRoot + sep))
      throw new FerryError('E_ARCHIVE_UNSAFE', `a link in the destination leads ${rel} outside it`);
  }

  private itemFailed(rel: string, err: unknown): false {
    if (!(err instanceof FerryError) || !ITEM_ERRORS.has(err.code)) throw err;
    this.options.onItemFailed(rel, err);
    return false;
  }
}

/** A small-file thread's failure as ferry's error. */
function writeError(err: WriteFailure, rel: string): FerryError {
  if (err.code === 'EINWAY') return new FerryError('E_EXISTS', `a folder is in the way: ${rel}`);
  const e = fromFsError(err, rel);
  return e instanceof FerryError ? e : new FerryError('E_BACKEND', `could not write ${rel}: ${err.message}`);
}
