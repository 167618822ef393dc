import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { PassThrough, Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { FerryError } from '../errors.ts';
import { fileThreads } from '../io/file-threads.ts';
import { BUFFERED_FILE_MAX } from '../storage/local/extract-tree.ts';
import type { ArchiveEntry, ArchiveFormat, ArchiveListing, ExtractJob } from './formats.ts';
import { selectEntry } from './formats.ts';
import { entryPath, linkTarget } from './guard.ts';

/** Debian programs that decompress what Node's zlib cannot (on this Node), and their packages. */
const DECOMPRESSORS: Partial<Record<ArchiveFormat, { command: string; pkg: string }>> = {
  'tar.bz2': { command: 'bzip2', pkg: 'bzip2' },
  'tar.xz': { command: 'xz', pkg: 'xz-utils' },
  'tar.zst': { command: 'zstd', pkg: 'zstd' },
};

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * The decompressed tar stream of `file`: gzip through Node's zlib, bzip2/xz/zstd through the
 * system program (killed when `signal` aborts). `onRead` counts archive bytes read.
 */
function tarStream(
  file: string,
  format: ArchiveFormat,
  signal: AbortSignal,
  onRead: (n: number) => void,
): { stream: Readable; finished: Promise<void> } {
  const input = createReadStream(file, { highWaterMark: 1 << 20 });
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      onRead(chunk.length);
      done(null, chunk);
    },
  });
  input.on('error', (err) => counter.destroy(err));
  input.pipe(counter);
  if (format === 'tar') return { stream: counter, finished: Promise.resolve() };
  if (format === 'tar.gz') {
    // Big output chunks: fewer round trips to the thread pool, which inflating is bound by.
    const gunzip = createGunzip({ chunkSize: 1 << 18 });
    counter.on('error', (err) => gunzip.destroy(err));
    counter.pipe(gunzip);
    return { stream: gunzip, finished: Promise.resolve() };
  }
  const tool = DECOMPRESSORS[format];
  if (!tool) throw new FerryError('E_ARCHIVE_FORMAT', `not a tar format: ${format}`);
  const child = spawn(tool.command, ['-dc'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    signal,
    killSignal: 'SIGKILL',
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const out = new PassThrough();
  child.stdout.pipe(out);
  counter.pipe(child.stdin);
  child.stdin.on('error', () => undefined); // the child exiting early is reported by its exit code
  counter.on('error', (err) => {
    out.destroy(err);
    child.kill('SIGKILL');
  });
  const finished = new Promise<void>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      const e =
        err.code === 'ENOENT'
          ? new FerryError('E_TOOL_MISSING', `${format} needs ${tool.command} (Debian package ${tool.pkg})`)
          : signal.aborted
            ? new FerryError('E_CANCELED', 'canceled', { cause: err })
            : err;
      out.destroy(e);
      reject(e);
    });
    child.once('close', (code) => {
      if (code === 0) return resolve();
      const e = new FerryError(
        'E_ARCHIVE_FORMAT',
        `damaged ${format} archive: ${stderr.trim() || `exit ${code}`}`,
      );
      out.destroy(e);
      reject(e);
    });
  });
  finished.catch(() => undefined);
  return { stream: out, finished };
}

/**
 * Run `onEntry` over the entries of a tar archive, one at a time, in archive order; each entry's
 * bytes must be consumed (or `resume()`d) before the next one arrives. A damaged or truncated
 * archive is `E_ARCHIVE_FORMAT`.
 */
async function walkTar(
  file: string,
  format: ArchiveFormat,
  signal: AbortSignal,
  onRead: (n: number) => void,
  onEntry: (entry: ReadEntry) => Promise<void>,
): Promise<void> {
  const { stream, finished } = tarStream(file, format, signal, onRead);
  let chain = Promise.resolve();
  let failure: unknown = null;
  /** The entry being handled: when the input fails mid-entry, its reader must be told. */
  let current: ReadEntry | null = null;
  const parser = new Parser({
    strict: true,
    onReadEntry(entry) {
      chain = chain.then(async () => {
        if (failure !== null) {
          entry.resume();
          return;
        }
        current = entry;
        try {
          await onEntry(entry);
        } catch (err) {
          failure ??= err;
          entry.resume();
          stream.destroy();
        } finally {
          current = null;
        }
      });
    },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown) => reject(err);
      stream.on('error', fail);
      parser.on('error', fail);
      parser.on('abort', fail);
      parser.on('end', resolve);
      stream.on('close', () => {
        // Input gone before the parser saw its end: aborted, or cut short by a failing entry.
        if (failure !== null) reject(failure);
      });
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      stream.pipe(parser);
    });
    await chain;
    await finished;
  } catch (err) {
    stream.destroy();
    // A truncated input leaves the current entry waiting for bytes that never come.
    const entry = current as ReadEntry | null;
    entry?.on('error', () => undefined); // its reader, if any, gets the error; none may listen yet
    entry?.destroy(err instanceof Error ? err : new Error(String(err)));
    await chain.catch(() => undefined);
    throw tarError(failure ?? err, format, signal);
  }
  if (failure !== null) throw tarError(failure, format, signal);
}

function tarError(err: unknown, format: ArchiveFormat, signal: AbortSignal): Error {
  if (err instanceof FerryError) return err;
  if (signal.aborted) return new FerryError('E_CANCELED', 'canceled', { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new FerryError('E_ARCHIVE_FORMAT', `damaged ${format} archive: ${message}`, { cause: err });
}

export async function listTar(
  file: string,
  format: ArchiveFormat,
  signal: AbortSignal,
): Promise<ArchiveListing> {
  const entries: ArchiveEntry[] = [];
  await walkTar(
    file,
    format,
    signal,
    () => undefined,
    async (entry) => {
      const isDir = entry.type === 'Directory';
      if (isDir || FILE_TYPES.has(entry.type)) {
        entries.push({
          path: entryPath(entry.path),
          isDir,
          size: isDir ? 0 : (entry.size ?? 0),
          modified: entry.mtime?.getTime() ?? 0,
        });
      }
      entry.resume();
    },
  );
  return { entries, encrypted: false, comment: '' };
}

/**
 * Extract a tar archive (streamed, any compression) into `job.tree`. Entries are checked as they
 * come: an unsafe name or a link pointing outside stops the extraction. Links that stay inside are
 * not created; hard links become copies of the file they name.
 */
export async function extractTar(job: ExtractJob, format: ArchiveFormat): Promise<void> {
  let matched = false;
  await walkTar(
    job.file,
    format,
    job.signal,
    (n) => job.onArchiveBytes?.(n),
    async (entry) => {
      const path = entryPath(entry.path);
      const rel = selectEntry(job.innerPath, path);
      if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
        // Checked even outside inner_path: a hostile archive is refused as a whole. A hard link
        // names its target from the archive's root, a symlink from its own folder.
        const target =
          entry.type === 'Link' ? entryPath(entry.linkpath ?? '') : linkTarget(path, entry.linkpath ?? '');
        entry.resume();
        if (rel === null) return;
        matched = true;
        const targetRel = entry.type === 'Link' ? selectEntry(job.innerPath, target) : null;
        if (targetRel === null) job.onSkippedLink(rel);
        else if (await job.tree.mayWrite(rel)) await job.tree.copyOf(rel, targetRel);
        return;
      }
      if (rel === null) {
        entry.resume();
        return;
      }
      matched = true;
      if (entry.type === 'Directory') {
        entry.resume();
        await job.tree.dir(rel);
      } else if (FILE_TYPES.has(entry.type)) {
        // Small files are read whole and written in the background while the archive is read on.
        if ((entry.size ?? 0) <= BUFFERED_FILE_MAX) await job.tree.put(rel, await readWhole(entry));
        else if (await job.tree.mayWrite(rel)) await job.tree.file(rel, Readable.from(entry));
        else entry.resume();
      } else {
        entry.resume(); // devices, FIFOs: nothing a storage can hold
      }
    },
  );
  if (job.innerPath !== '/' && !matched)
    throw new FerryError('E_NOT_FOUND', `not in the archive: ${job.innerPath}`);
}

/** All of an entry's bytes (the header's size, which the parser never exceeds). */
async function readWhole(entry: ReadEntry): Promise<Buffer> {
  const data = fileThreads.buffer(entry.size ?? 0);
  let at = 0;
  for await (const chunk of entry) at += (chunk as Buffer).copy(data, at);
  if (at !== data.length) throw new FerryError('E_ARCHIVE_FORMAT', `${entry.path} is cut short`);
  return data;
}
