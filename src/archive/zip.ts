import { createReadStream } from 'node:fs';
import { type FileHandle, open as openFile } from 'node:fs/promises';
import { pipeline, Readable, Transform } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import {
  configure,
  type Entry,
  ERR_INVALID_COMPRESSED_DATA,
  ERR_INVALID_CRC32,
  ERR_INVALID_UNCOMPRESSED_SIZE,
  type FileEntry,
  Reader,
  TextWriter,
  ZipReader,
} from '@zip.js/zip.js';
import { FerryError } from '../errors.ts';
import { fileThreads } from '../io/file-threads.ts';
import { BUFFERED_FILE_MAX } from '../storage/local/extract-tree.ts';
import { type ArchiveListing, type ExtractJob, selectEntry } from './formats.ts';
import { entryPath, linkTarget } from './guard.ts';

// Node has no web workers in zip.js' sense; its own code paths are used instead.
configure({ useWebWorkers: false });

/** Longest link target read from a symlink entry. */
const MAX_LINK_TARGET = 4096;

/**
 * A ZipCrypto entry checks a password against one byte, so one wrong password in 256 passes; an
 * AES one against two bytes, so one in 65,536 does. The password is proven by decrypting a whole
 * entry and checking its CRC-32 (ZipCrypto) or its authentication code (AES): the smallest
 * encrypted one that is not empty, when it is at most this big. A larger one is not read for a
 * listing; its extraction still checks every entry.
 */
const PASSWORD_PROOF_MAX = 16 * 1024 * 1024;

/** Entries extracted at once: an archive of small files is bound by per-file work. */
const WORKERS = 4;

const STORED = 0;
const DEFLATED = 8;

const inflateRaw = promisify(zlib.inflateRaw);
/** Node's native CRC-32 (Node 20.15 and later); without it every entry goes through zip.js. */
const crc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

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

/** zip.js reads the archive through this: positional reads of one open file. */
class FileReader extends Reader<FileHandle> {
  constructor(
    private readonly handle: FileHandle,
    size: number,
  ) {
    super(handle);
    this.size = size;
  }

  override async readUint8Array(index: number, length: number): Promise<Uint8Array> {
    const n = Math.max(0, Math.min(length, this.size - index));
    // Not from Node's shared pool: zip.js keeps views of header bytes, which would each keep a
    // whole pool slab alive.
    const buf = Buffer.allocUnsafeSlow(n);
    let done = 0;
    while (done < n) {
      const { bytesRead } = await this.handle.read(buf, done, n - done, index + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  }
}

interface OpenZip {
  reader: ZipReader<FileHandle>;
  entries: Entry[];
  /** The archive file, for reading entries' bytes directly. */
  file: FileHandle;
  close(): Promise<void>;
}

async function open(path: string): Promise<OpenZip> {
  const file = await openFile(path, 'r');
  const reader = new ZipReader(new FileReader(file, (await file.stat()).size));
  const close = async () => {
    await reader.close().catch(() => undefined);
    await file.close().catch(() => undefined);
  };
  try {
    // Names are checked by entryPath, which refuses what zip.js would and reports it our way.
    const entries = await reader.getEntries({ filenameValidation: 'tolerant' });
    return { reader, entries, file, close };
  } catch (err) {
    await close();
    throw zipError(err, 'not a readable zip archive');
  }
}

/** The entries of a zip archive (names are not encrypted, so no password is needed). */
export async function listZip(file: string): Promise<ArchiveListing> {
  const { reader, entries, close } = await open(file);
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
    await close();
  }
}

/** Check `password` against the archive's encrypted entries; `E_ARCHIVE_PASSWORD` when wrong. */
export async function checkZipPassword(file: string, password: string): Promise<void> {
  const { entries, close } = await open(file);
  try {
    await provePassword(entries, password);
  } catch (err) {
    throw zipError(err, 'damaged zip archive');
  } finally {
    await close();
  }
}

/**
 * Fail with `E_ARCHIVE_PASSWORD` unless `password` opens the smallest encrypted file entry among
 * `entries` (see PASSWORD_PROOF_MAX). Entries that are not encrypted need nothing.
 */
async function provePassword(entries: Entry[], password: string): Promise<void> {
  // An empty entry decrypts to nothing whatever the password, and nothing has the CRC-32 it
  // states: the proof takes the smallest one with content.
  const size = (e: FileEntry) => (e.uncompressedSize === 0 ? Number.POSITIVE_INFINITY : e.compressedSize);
  let smallest: FileEntry | undefined;
  for (const e of entries)
    if (!e.directory && e.encrypted && (!smallest || size(e) < size(smallest))) smallest = e;
  if (!smallest) return;
  if (!password)
    throw new FerryError('E_ARCHIVE_PASSWORD', 'the archive is encrypted: a password is required');
  await smallest.getData(new TextWriter(), { password, checkPasswordOnly: true });
  if (smallest.uncompressedSize === 0 || smallest.compressedSize > PASSWORD_PROOF_MAX) return;
  const entry = smallest;
  await entry
    .getData(new WritableStream<Uint8Array>(), { password, checkCrc32: true })
    .catch((err: unknown) => {
      throw decryptError(entry, err);
    });
}

/** zip.js' message for an AES entry whose authentication code does not match its bytes. */
const ERR_INVALID_AUTHENTICATION_CODE = 'Invalid authentication code';

/**
 * An encrypted entry whose password passed its one- or two-byte check (ZipCrypto, AES) and whose
 * content then fails to inflate, fails its CRC-32 or fails its authentication code was, all but
 * once in 256 (65,536), opened with a wrong password: nothing tells that from damaged bytes, and
 * it is reported as the likelier cause. Other errors are kept.
 */
function decryptError(entry: FileEntry, err: unknown): unknown {
  const message = err instanceof Error ? err.message : '';
  const unreadable = [
    ERR_INVALID_CRC32,
    ERR_INVALID_COMPRESSED_DATA,
    ERR_INVALID_UNCOMPRESSED_SIZE,
    ERR_INVALID_AUTHENTICATION_CODE,
  ];
  if (!entry.encrypted || !unreadable.includes(message)) return err;
  const check = entry.zipCrypto ? 'its CRC-32' : 'its authentication code';
  return new FerryError(
    'E_ARCHIVE_PASSWORD',
    `wrong archive password: ${entry.filename} does not decrypt to ${check}`,
    {
      cause: err,
    },
  );
}

/**
 * Extract a zip archive into `job.tree`. Every name is checked before anything is written, so a
 * hostile archive leaves nothing behind; symlink entries are refused when they point outside and
 * skipped otherwise. Several entries are extracted at once. zip.js reads the archive's structure;
 * the bytes of unencrypted stored or deflated entries are read straight from the file and
 * inflated by Node's zlib, their size and CRC-32 checked before they are put in place. Encrypted
 * entries go through zip.js.
 */
export async function extractZip(job: ExtractJob): Promise<void> {
  const { entries, file, close } = await open(job.file);
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
    // A wrong password fails here, before any file is written.
    await provePassword(
      selected.map(({ entry }) => entry),
      job.password,
    );
    job.setTotals({ bytes, files: selected.filter(({ entry }) => !entry.directory).length });
    let next = 0;
    let stop = false;
    const worker = async () => {
      while (!stop && next < selected.length) {
        const { entry, rel } = selected[next++] as { entry: Entry; rel: string };
        job.signal.throwIfAborted();
        if (entry.directory) await job.tree.dir(rel);
        else if (entry.symlink) await checkLink(entry, rel, job);
        else if (!isPlain(entry)) {
          if (await job.tree.mayWrite(rel)) await extractFile(entry, rel, job);
        } else if (Math.max(entry.compressedSize, entry.uncompressedSize) <= BUFFERED_FILE_MAX) {
          await job.tree.put(rel, await readSmall(entry, file));
        } else if (await job.tree.mayWrite(rel)) {
          await job.tree.file(rel, await readLarge(entry, job.file));
        }
      }
    };
    const results = await Promise.allSettled(
      Array.from({ length: WORKERS }, () =>
        worker().catch((err: unknown) => {
          stop = true;
          throw err;
        }),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    throw zipError(err, 'damaged zip archive');
  } finally {
    await close();
  }
}

/** zip.js' compression method of an entry (present at run time, missing from its types). */
function methodOf(entry: FileEntry): number | undefined {
  return (entry as { compressionMethod?: number }).compressionMethod;
}

/** An entry ferry reads itself: not encrypted, stored or deflated, and a CRC-32 to check it by. */
function isPlain(entry: FileEntry): boolean {
  const method = methodOf(entry);
  return !entry.encrypted && (method === STORED || method === DEFLATED) && crc32 !== undefined;
}

/**
 * Where an entry's bytes start. zip.js reads and checks the entry's local header (and refuses
 * entries that overlap another, a zip bomb's trick) without reading the bytes.
 */
async function dataOffset(entry: FileEntry): Promise<number> {
  await entry.getData(undefined as never, { checkOverlappingEntryOnly: true });
  const offset = (entry as { localDirectory?: { dataOffset?: number } }).localDirectory?.dataOffset;
  if (typeof offset !== 'number') throw new FerryError('E_ARCHIVE_FORMAT', `no data for ${entry.filename}`);
  return offset;
}

function mismatch(entry: FileEntry, what: string): FerryError {
  return new FerryError('E_ARCHIVE_FORMAT', `damaged zip archive: ${entry.filename} ${what}`);
}

/** A small entry's bytes, whole, checked against its size and CRC-32. */
async function readSmall(entry: FileEntry, file: FileHandle): Promise<Buffer> {
  const at = await dataOffset(entry);
  // Stored bytes go to the writer as they are: read them into its memory.
  const raw =
    methodOf(entry) === STORED
      ? fileThreads.buffer(entry.compressedSize)
      : Buffer.allocUnsafe(entry.compressedSize);
  const { bytesRead } = await file.read(raw, 0, raw.length, at);
  if (bytesRead !== raw.length) throw mismatch(entry, 'is cut short');
  const data =
    methodOf(entry) === STORED
      ? raw
      : await inflateRaw(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) }).catch((err) => {
          throw mismatch(entry, `does not inflate to its stated size (${(err as Error).message})`);
        });
  if (data.length !== entry.uncompressedSize) throw mismatch(entry, 'has a wrong size');
  if ((crc32 as NonNullable<typeof crc32>)(data) !== entry.signature)
    throw mismatch(entry, 'fails its CRC-32');
  return data;
}

/**
 * A large entry's bytes as a stream that fails, before its end, when they exceed the stated size
 * and, at its end, when they fall short or fail the CRC-32 (so the file is never put in place).
 */
async function readLarge(entry: FileEntry, path: string): Promise<Readable> {
  const at = await dataOffset(entry);
  const expected = entry.uncompressedSize;
  const sum = crc32 as NonNullable<typeof crc32>;
  let size = 0;
  let crc = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > expected) return done(mismatch(entry, 'is larger than its stated size'));
      crc = sum(chunk, crc);
      done(null, chunk);
    },
    flush(done) {
      if (size !== expected) return done(mismatch(entry, 'has a wrong size'));
      done(crc === entry.signature ? null : mismatch(entry, 'fails its CRC-32'));
    },
  });
  const input = createReadStream(path, {
    start: at,
    end: at + entry.compressedSize - 1,
    highWaterMark: 1 << 20,
  });
  // Errors anywhere destroy `check`, which the writer's pipeline reports.
  const ignore = () => undefined;
  return methodOf(entry) === STORED
    ? pipeline(input, check, ignore)
    : pipeline(input, zlib.createInflateRaw(), check, ignore);
}

async function checkLink(entry: FileEntry, rel: string, job: ExtractJob): Promise<void> {
  if (entry.uncompressedSize > MAX_LINK_TARGET)
    throw new FerryError('E_ARCHIVE_FORMAT', `link ${rel} has an oversized target`);
  const target = await entry
    .getData(new TextWriter(), {
      signal: job.signal,
      checkCrc32: true,
      ...(job.password && { password: job.password }),
    })
    .catch((err: unknown) => {
      throw decryptError(entry, err);
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
    .getData(writable, {
      signal: abort.signal,
      // Without it, an entry opened by a wrong password that passed ZipCrypto's one-byte check
      // would be written as garbage (stored) or fail as damaged (deflated).
      checkCrc32: true,
      ...(job.password && { password: job.password }),
    })
    .catch((err: unknown) => {
      const reported = decryptError(entry, err);
      // Unblock the writer, which would otherwise wait for bytes that never come.
      source.destroy(reported as Error);
      throw reported;
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
