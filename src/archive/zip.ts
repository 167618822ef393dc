import { openAsBlob } from 'node:fs';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { BlobReader, configure, type Entry, type FileEntry, TextWriter, ZipReader } from '@zip.js/zip.js';
import { FerryError } from '../errors.ts';
import { type ArchiveListing, type ExtractJob, selectEntry } from './formats.ts';
import { entryPath, linkTarget } from './guard.ts';

// Node has no web workers in zip.js' sense; its own code paths are used instead.
configure({ useWebWorkers: false });

/** Longest link target read from a symlink entry. */
const MAX_LINK_TARGET = 4096;

/** zip.js' messages for a wrong or missing password, and for damaged archives. */
function zipError(err: unknown, what: string): Error {
  if (err instanceof FerryError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/invalid password/i.test(message))
    return new FerryError('E_ARCHIVE_PASSWORD', 'wrong archive password', { cause: err });
  if (/encrypted/i.test(message))
    return new FerryError('E_ARCHIVE_PASSWORD', 'the archive is encrypted: a password is required', {
      cause: err,
    });
  if ((err as { name?: string })?.name === 'AbortError' || /abort/i.test(message))
    return new FerryError('E_CANCELED', 'canceled', { cause: err });
  return new FerryError('E_ARCHIVE_FORMAT', `${what}: ${message}`, { cause: err });
}

async function open(file: string): Promise<{ reader: ZipReader<Blob>; entries: Entry[] }> {
  const reader = new ZipReader(new BlobReader(await openAsBlob(file)));
  try {
    // Names are checked by entryPath, which refuses what zip.js would and reports it our way.
    const entries = await reader.getEntries({ filenameValidation: 'tolerant' });
    return { reader, entries };
  } catch (err) {
    await reader.close().catch(() => undefined);
    throw zipError(err, 'not a readable zip archive');
  }
}

/** The entries of a zip archive (names are not encrypted, so no password is needed). */
export async function listZip(file: string): Promise<ArchiveListing> {
  const { reader, entries } = await open(file);
  try {
    return {
      entries: entries.map((e) => ({
        path: entryPath(e.filename),
        isDir: e.directory,
        size: e.directory ? 0 : e.uncompressedSize,
        modified: e.lastModDate?.getTime() ?? 0,
      })),
      encrypted: entries.some((e) => e.encrypted),
      comment: new TextDecoder().decode(reader.comment),
    };
  } finally {
    await reader.close().catch(() => undefined);
  }
}

/** Check `password` against the first encrypted entry; `E_ARCHIVE_PASSWORD` when wrong. */
export async function checkZipPassword(file: string, password: string): Promise<void> {
  const { reader, entries } = await open(file);
  try {
    const entry = entries.find((e): e is FileEntry => !e.directory && e.encrypted);
    if (!entry) return;
    if (!password)
      throw new FerryError('E_ARCHIVE_PASSWORD', 'the archive is encrypted: a password is required');
    await entry.getData(new TextWriter(), { password, checkPasswordOnly: true });
  } catch (err) {
    throw zipError(err, 'damaged zip archive');
  } finally {
    await reader.close().catch(() => undefined);
  }
}

/**
 * Extract a zip archive into `job.tree`. Every name is checked before anything is written, so a
 * hostile archive leaves nothing behind; symlink entries are refused when they point outside and
 * skipped otherwise.
 */
export async function extractZip(job: ExtractJob): Promise<void> {
  const { reader, entries } = await open(job.file);
  try {
    const selected: { entry: Entry; rel: string }[] = [];
    let bytes = 0;
    for (const entry of entries) {
      const rel = selectEntry(job.innerPath, entryPath(entry.filename));
      if (rel === null) continue;
      selected.push({ entry, rel });
      if (!entry.directory) bytes += entry.uncompressedSize;
    }
    if (job.innerPath !== '/' && selected.length === 0)
      throw new FerryError('E_NOT_FOUND', `not in the archive: ${job.innerPath}`);
    if (!job.password && selected.some(({ entry }) => entry.encrypted))
      throw new FerryError('E_ARCHIVE_PASSWORD', 'the archive is encrypted: a password is required');
    job.setTotals({ bytes, files: selected.filter(({ entry }) => !entry.directory).length });
    for (const { entry, rel } of selected) {
      job.signal.throwIfAborted();
      if (entry.directory) await job.tree.dir(rel);
      else if (entry.symlink) await checkLink(entry, rel, job);
      else if (await job.tree.mayWrite(rel)) await extractFile(entry, rel, job);
    }
  } catch (err) {
    throw zipError(err, 'damaged zip archive');
  } finally {
    await reader.close().catch(() => undefined);
  }
}

async function checkLink(entry: FileEntry, rel: string, job: ExtractJob): Promise<void> {
  if (entry.uncompressedSize > MAX_LINK_TARGET)
    throw new FerryError('E_ARCHIVE_FORMAT', `link ${rel} has an oversized target`);
  const target = await entry.getData(new TextWriter(), {
    signal: job.signal,
    ...(job.password && { password: job.password }),
  });
  linkTarget(rel, target);
  job.onSkippedLink(rel);
}

async function extractFile(entry: FileEntry, rel: string, job: ExtractJob): Promise<void> {
  const abort = new AbortController();
  const onAbort = () => abort.abort(job.signal.reason);
  job.signal.addEventListener('abort', onAbort, { once: true });
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const source = Readable.fromWeb(readable as NodeReadableStream<Uint8Array>);
  // Errors reach the writer through its pipeline, which is set up a moment later; until then an
  // 'error' event without a listener would crash the process.
  source.on('error', () => undefined);
  const unpacked = entry
    .getData(writable, { signal: abort.signal, ...(job.password && { password: job.password }) })
    .catch((err: unknown) => {
      // Unblock the writer, which would otherwise wait for bytes that never come.
      source.destroy(err as Error);
      throw err;
    });
  const written = job.tree.file(rel, source).catch((err: unknown) => {
    abort.abort(err);
    throw err;
  });
  try {
    const [u, w] = await Promise.allSettled([unpacked, written]);
    // The unpacker's own error (wrong password, bad data) says more than the broken pipe it causes.
    if (u.status === 'rejected' && !(w.status === 'rejected' && isFerry(w.reason))) throw u.reason;
    if (w.status === 'rejected') throw w.reason;
  } finally {
    job.signal.removeEventListener('abort', onAbort);
  }
}

function isFerry(err: unknown): boolean {
  return err instanceof FerryError && err.code !== 'E_CANCELED';
}
