import { createWriteStream, type Stats } from 'node:fs';
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  realpath,
  rename,
  rm,
  stat,
  statfs,
  unlink,
  utimes,
} from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, fromFsError, isFerryError } from '../../errors.ts';
import type { ListedEntry } from '../../io/file-thread-messages.ts';
import { fileThreads } from '../../io/file-threads.ts';
import {
  checkRange,
  type Driver,
  type DriverCapabilities,
  type Entry,
  type MeasureOptions,
  type ReadOptions,
  type WriteOptions,
} from '../driver.ts';
import { baseName, isWithin, joinPath, normalizePath, TEMP_PREFIX, tempPathFor } from '../paths.ts';
import { copyLocalFile } from './fast-copy.ts';
import { fsyncFile, moveNoClobber, place, replaceFolder, sameFile } from './placing.ts';
import { type Located, MISSING, SafePaths } from './safe-paths.ts';

/** Links looked at once while listing a folder (their targets are checked one by one). */
const LIST_CONCURRENCY = 32;

/**
 * A folder on the local disk. Paths are checked here again, whatever the caller did: they are
 * normalised (no `..`), and the real path of the deepest existing ancestor must stay inside the
 * real root, so a symlink anywhere on the way that leads out of the root is refused
 * (`E_PATH_OUTSIDE_ROOT`). Links that stay inside the root are followed. A link that leads out
 * is still listed and `stat`ed (as a plain empty file) and may be removed (`rm` unlinks the link,
 * never its target), but reading, writing, listing or renaming through it is refused.
 *
 * The checks themselves, and the race between them and the file operations that we accept, are in
 * `SafePaths`.
 */
export class LocalDriver implements Driver {
  readonly name = 'Local';
  readonly capabilities: DriverCapabilities = {
    serverSideCopy: true,
    atomicRename: true,
    folderRename: true,
    rangeRead: true,
  };
  private readonly paths: SafePaths;

  private constructor(root: string) {
    this.paths = new SafePaths(root);
  }

  /**
   * Open the folder `root` (an absolute path), creating it when missing; the driver works on its
   * real path from then on. `E_STORAGE_CONFIG` when it is relative, not a folder or not usable.
   */
  static async open(root: string): Promise<LocalDriver> {
    if (!isAbsolute(root))
      throw new FerryError('E_STORAGE_CONFIG', `the Local root must be absolute: ${root}`);
    try {
      await mkdir(root, { recursive: true });
      const real = await realpath(root);
      if (!(await stat(real)).isDirectory())
        throw new FerryError('E_STORAGE_CONFIG', `${root} is not a folder`);
      return new LocalDriver(real);
    } catch (err) {
      if (err instanceof FerryError) throw err;
      const message = `cannot use ${root} as a Local root: ${(err as Error).message}`;
      throw new FerryError('E_STORAGE_CONFIG', message, { cause: err });
    }
  }

  /**
   * The absolute path behind `path`, checked like every other operation (synchronously, as the
   * interface wants a plain value): `E_PATH_OUTSIDE_ROOT` when it leads out of the root. With
   * `newName`, only its folders are checked (see `Driver.localPath`).
   */
  localPath(path: string, options?: { newName?: boolean }): string {
    return this.paths.localPath(path, options);
  }

  async stat(path: string): Promise<Entry | null> {
    const at = this.paths.locate(path);
    if (at.escapingLink) return linkEntry(at.path, at.escapingLink);
    if (!at.info) return null;
    return at.link ? { ...toEntry(at.path, at.info), link: true } : toEntry(at.path, at.info);
  }

  async list(path: string): Promise<Entry[]> {
    const at = this.paths.existing(path);
    if (!at.info.isDirectory()) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${at.path}`);
    if (this.paths.loops(at)) throw loop(at.path);
    // One message to a small-file thread reads the folder and lstats every name in it: a
    // thread-pool round trip per name cost more than the lstat itself.
    let listed: ListedEntry[];
    try {
      listed = await fileThreads.list(at.abs);
    } catch (err) {
      throw fromFsError(err, at.path);
    }
    const entries: Entry[] = [];
    const links: string[] = [];
    for (const { name, isDir, isLink, size, mtimeMs } of listed) {
      if (name.startsWith(TEMP_PREFIX)) continue;
      if (isLink) links.push(name);
      else entries.push(entryOf(childPath(at.path, name), isDir, size, mtimeMs));
    }
    for (let i = 0; i < links.length; i += LIST_CONCURRENCY) {
      const batch = links.slice(i, i + LIST_CONCURRENCY);
      for (const entry of await Promise.all(batch.map((name) => this.child(at, name)))) {
        if (entry) entries.push(entry);
      }
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * One message to a small-file thread counts the whole tree (a listing per folder would be a
   * round trip each). Links are counted as `list` shows them: one that stays inside the root as
   * what it leads to (a folder is counted through), any other as an empty file.
   */
  async measure(path: string, options: MeasureOptions = {}): Promise<{ files: number; bytes: number }> {
    const at = this.paths.existing(path);
    if (!at.info.isDirectory()) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${at.path}`);
    if (this.paths.loops(at)) throw loop(at.path);
    return this.measureFolder(at, options);
  }

  /** `measure` of a folder already located and checked. */
  private async measureFolder(
    at: Located,
    options: MeasureOptions,
  ): Promise<{ files: number; bytes: number }> {
    let measured: { files: number; bytes: number; links: string[] };
    try {
      measured = await fileThreads.measure(at.abs, TEMP_PREFIX);
    } catch (err) {
      throw fromFsError(err, at.path);
    }
    let { files, bytes } = measured;
    for (const rel of measured.links) {
      const link = this.paths.locate(joinPath(at.path, rel));
      if (!link.info && !link.escapingLink) continue; // gone since
      // One leading out (or nowhere) lists as an empty file; with linksAsFiles, any link does.
      if (!link.info || options.linksAsFiles) {
        files++;
        continue;
      }
      if (!link.info.isDirectory()) {
        files++;
        bytes += link.info.size;
      } else if (!this.paths.loops(link)) {
        // A link back into a folder on its own path is not counted through (a walk stops there),
        // nor is one to a folder that cannot be listed (the walk reports it).
        const inner = await this.measureFolder(link, options).catch(() => ({ files: 0, bytes: 0 }));
        files += inner.files;
        bytes += inner.bytes;
      }
    }
    return { files, bytes };
  }

  async read(path: string, options: ReadOptions = {}): Promise<Readable> {
    const at = this.paths.existing(path);
    if (at.info.isDirectory()) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${at.path}`);
    checkRange(options);
    if (options.signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    // Open now, so a missing or unreadable file is an error of read() rather than of the stream.
    let handle: FileHandle;
    try {
      handle = await open(at.abs, 'r');
    } catch (err) {
      throw fromFsError(err, at.path);
    }
    return handle.createReadStream({
      highWaterMark: 1 << 20,
      start: options.start,
      end: options.end,
      ...(options.signal && { signal: options.signal }),
    });
  }

  async write(path: string, source: Readable, options: WriteOptions = {}): Promise<void> {
    const at = this.paths.confined(path);
    if (at.info && !options.overwrite) throw alreadyExists(at.path);
    if (at.info?.isDirectory()) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${at.path}`);
    const temp = await this.prepareTemp(at, options.tempKey);
    const onProgress = options.onProgress;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        onProgress?.(chunk.length);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, counter, createWriteStream(temp, { highWaterMark: 1 << 20 }), {
        ...(options.signal && { signal: options.signal }),
      });
      // Before the fsync, which then flushes the time with the bytes.
      if (options.modified !== undefined)
        await utimes(temp, options.modified / 1000, options.modified / 1000);
      if (options.sync !== false) await fsyncFile(temp);
      // A cancel that lands after the last byte still cancels: the task will say "canceled".
      options.signal?.throwIfAborted();
      await options.beforePlace?.();
      await place(temp, at.abs, options.overwrite === true);
    } catch (err) {
      source.destroy();
      await unlink(temp).catch(() => undefined);
      throw failure(err, at.path, options.signal);
    }
  }

  async mkdir(path: string): Promise<void> {
    const at = this.paths.confined(path);
    if (at.info?.isDirectory()) return;
    try {
      await mkdir(at.abs, { recursive: true });
    } catch (err) {
      throw fromFsError(err, at.path);
    }
  }

  /**
   * Rename a file or folder; parent folders of `to` are created. Without `overwrite`, a file is
   * moved with link + unlink, which refuses an existing name atomically; a folder is checked and
   * then renamed (a folder appearing in between is replaced only when empty: nothing is lost).
   * With `overwrite`, a file replaces a file atomically and a folder replaces a folder (the old
   * one is set aside under a temp name and removed afterwards); a file never replaces a folder.
   * `E_SAME_PATH` for a rename onto itself, `E_BAD_REQUEST` for a folder into itself.
   */
  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const fromPath = normalizePath(from);
    const toPath = normalizePath(to);
    if (fromPath === '/' || toPath === '/') throw new FerryError('E_FORBIDDEN', 'cannot rename the root');
    if (fromPath === toPath) throw new FerryError('E_SAME_PATH', 'source and destination are the same');
    if (isWithin(toPath, fromPath)) throw new FerryError('E_BAD_REQUEST', 'cannot move a folder into itself');
    const src = this.paths.existing(fromPath);
    const dst = this.paths.confined(toPath);
    const srcIsDir = src.info.isDirectory();
    try {
      await mkdir(dirname(dst.abs), { recursive: true });
      if (!dst.info) {
        if (srcIsDir) await rename(src.abs, dst.abs);
        else await moveNoClobber(src.abs, dst.abs);
      } else if (!srcIsDir && (await sameFile(src.abs, dst.abs))) {
        // Both names on one inode: a rename interrupted between link and unlink. Finish it.
        await unlink(src.abs);
      } else if (!options.overwrite) {
        throw alreadyExists(dst.path);
      } else if (dst.info.isDirectory()) {
        if (!srcIsDir)
          throw new FerryError('E_IS_A_DIRECTORY', `a file cannot replace the folder ${dst.path}`);
        await replaceFolder(src.abs, dst.abs);
      } else {
        await rename(src.abs, dst.abs);
      }
    } catch (err) {
      throw failure(err, dst.path);
    }
  }

  /**
   * Copy one file on this disk through a temp sibling, renamed into place when complete. The
   * bytes go through `copyLocalFile` rather than `fs.copyFile`, so the copy reports progress,
   * stops within one chunk on abort and is fsynced (unless `sync` is false). `E_IS_A_DIRECTORY`
   * for a folder source.
   */
  async copy(from: string, to: string, options: WriteOptions = {}): Promise<void> {
    const src = this.paths.existing(from);
    if (src.info.isDirectory()) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${src.path}`);
    const dst = this.paths.confined(to);
    if (dst.path === src.path) throw new FerryError('E_SAME_PATH', 'source and destination are the same');
    if (dst.info && !options.overwrite) throw alreadyExists(dst.path);
    if (dst.info?.isDirectory()) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${dst.path}`);
    const temp = await this.prepareTemp(dst, options.tempKey);
    try {
      await copyLocalFile(src.abs, temp, {
        ...(options.signal && { signal: options.signal }),
        ...(options.onProgress && { onProgress: options.onProgress }),
        sizeHint: src.info.size,
        sync: options.sync !== false,
      });
      options.signal?.throwIfAborted();
      await options.beforePlace?.();
      await place(temp, dst.abs, options.overwrite === true);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw failure(err, dst.path, options.signal);
    }
  }

  /** Remove a file, link or folder tree; `E_FORBIDDEN` for the root itself. Links are not followed. */
  async remove(path: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const at = this.paths.locate(path);
    if (at.path === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    if (options.signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    try {
      // A file (or any link) is unlinked itself: rm() retries a refused unlink as a folder and
      // then reports ENOTDIR, hiding why the file could not go.
      if (at.info?.isDirectory() && !at.link) await rm(at.abs, { recursive: true, force: true });
      else await unlink(at.abs).catch((err) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    } catch (err) {
      throw fromFsError(err, at.path);
    }
  }

  async freeSpace(path: string): Promise<number | null> {
    const at = this.paths.confined(path);
    // The nearest existing folder tells: the path itself may not exist yet.
    for (let probe = at.abs; ; probe = dirname(probe)) {
      try {
        const fs = await statfs(probe);
        return fs.bavail * fs.bsize;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (!MISSING.has(code ?? '') || probe === this.paths.root) throw fromFsError(err, at.path);
      }
    }
  }

  async close(): Promise<void> {}

  /** A child of a listed folder; null when it vanished between readdir and lstat. */
  private async child(dir: Located, name: string): Promise<Entry | null> {
    const abs = join(dir.abs, name);
    const path = childPath(dir.path, name);
    try {
      const own = await lstat(abs);
      if (!own.isSymbolicLink()) return toEntry(path, own);
      // Follow a link only when it stays inside the root; others are listed as plain entries.
      const target = await realpath(abs).catch(() => null);
      return target && this.paths.inside(target)
        ? { ...toEntry(path, await stat(target)), link: true }
        : linkEntry(path, own);
    } catch {
      return null;
    }
  }

  /** Create the parent folders of `at` and clear its temp sibling; returns the temp's absolute path. */
  private async prepareTemp(at: Located, key: string | undefined): Promise<string> {
    try {
      await mkdir(dirname(at.abs), { recursive: true });
    } catch (err) {
      throw fromFsError(err, at.path);
    }
    const temp = this.paths.abs(tempPathFor(at.path, key));
    // A temp left by an interrupted attempt with the same key may still be hard-linked to a
    // placed file: remove it rather than truncate it (truncating would empty that file too).
    await unlink(temp).catch(() => undefined);
    return temp;
  }
}

/** The error to throw for a failed operation on `path`: cancel wins, coded errors pass through. */
function failure(err: unknown, path: string, signal?: AbortSignal): Error {
  if (signal?.aborted && !isFerryError(err, 'E_CANCELED'))
    return new FerryError('E_CANCELED', 'canceled', { cause: err });
  if (err instanceof FerryError) return err;
  if ((err as NodeJS.ErrnoException).code === 'EINVAL')
    return new FerryError('E_BAD_REQUEST', `invalid operation on ${path}`, { cause: err });
  return fromFsError(err, path);
}

function alreadyExists(path: string): FerryError {
  return new FerryError('E_EXISTS', `already exists: ${path}`);
}

function toEntry(path: string, info: Stats): Entry {
  return entryOf(path, info.isDirectory(), info.size, info.mtimeMs);
}

function entryOf(path: string, isDir: boolean, size: number, modified: number): Entry {
  return { name: baseName(path), path, isDir, size: isDir ? 0 : size, modified };
}

/** The driver path of `name` in the folder `dir` (both normalised). */
function childPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** `list` or `measure` of a folder that `SafePaths.loops` found to lead back onto its own path. */
function loop(path: string): FerryError {
  return new FerryError('E_INVALID_PATH', `a link loop: ${path} leads back into a folder on its own path`);
}

/** A link leading out of the root, shown as what it is to us: an empty, unreadable file. */
function linkEntry(path: string, own: Stats): Entry {
  return { name: baseName(path), path, isDir: false, size: 0, modified: own.mtimeMs };
}
