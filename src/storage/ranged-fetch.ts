import { open } from 'node:fs/promises';
import { type Readable, Transform } from 'node:stream';
import { FerryError } from '../errors.ts';
import { writebackOf } from '../io/background-flush.ts';
import { ChunkWriter } from '../io/chunk-writer.ts';
import type { Endpoint, ReadInto } from './driver.ts';

/** Remote files this large or larger are fetched as several ranges at once (when the source can). */
export const RANGED_FETCH_MIN = 64 * 1024 * 1024;
/** Ranges in flight at once: one stream from a remote rarely fills the link (rclone uses 4 too). */
const RANGES_IN_FLIGHT = 4;
/** Bytes per range request: large enough that request overhead is noise. */
const RANGE_BYTES = 16 * 1024 * 1024;

export interface RangedFetchOptions {
  signal: AbortSignal;
  onProgress: (bytes: number) => void;
  /** Flush the file to disk as it is written and at the end; false leaves that to the OS. */
  sync: boolean;
  /**
   * Bytes `0..from-1` of `temp` are already the source's (an earlier attempt's, on disk): only
   * the rest is fetched, and `temp` is not emptied first.
   */
  from?: number;
  /**
   * Called about once every `CHECKPOINT_MS` with a length whose bytes are all in `temp` and on
   * disk (datasynced first): what a later attempt may keep as its `from`. A rejection (a lost
   * lease) stops the fetch with that error.
   */
  checkpoint?: (done: number) => Promise<void>;
}

/** How often a fetch with a `checkpoint` records how far it got. */
const CHECKPOINT_MS = 1000;

/** One range being fetched, and how many of its bytes are written so far (in order). */
interface RangeWrite {
  start: number;
  end: number;
  written: number;
}

/** The length of the start of the file that is all written: up to the first range not complete. */
function writtenPrefix(from: number, ranges: readonly RangeWrite[]): number {
  let done = from;
  for (const range of ranges) {
    done = range.start + range.written;
    if (done <= range.end) break;
  }
  return done;
}

/**
 * Fill the local file `temp` (created or truncated, or continued from `from`) with the `size`
 * bytes of `src`, fetched as ranges of 16 MiB, four at a time, each written at its own offset,
 * flushed to disk as it goes and fsynced at the end (when `sync`). A range that delivers more or
 * fewer bytes than asked (a server that ignores `Range`, a file that changed) fails the fetch
 * rather than writing a wrong file. On abort every stream is destroyed at once.
 */
export async function fetchRangesInto(
  src: Endpoint,
  temp: string,
  size: number,
  options: RangedFetchOptions,
): Promise<void> {
  const { onProgress, from = 0, checkpoint } = options;
  // The first range to fail stops the others.
  const stop = new AbortController();
  const signal = AbortSignal.any([options.signal, stop.signal]);
  const file = await open(temp, from > 0 ? 'r+' : 'w');
  // The disk writes what has arrived while the rest is fetched: the fsync at the end waits for
  // the tail only.
  const writeback = writebackOf(temp, options.sync);
  const writers: ChunkWriter[] = [];
  const ranges: RangeWrite[] = [];
  let saved = from;
  let saving: Promise<void> | null = null;
  const save = async () => {
    const done = writtenPrefix(from, ranges);
    if (done <= saved) return;
    await file.datasync();
    await checkpoint?.(done);
    saved = done;
  };
  const checkpoints =
    checkpoint &&
    setInterval(() => {
      saving ??= save()
        .catch((err: unknown) => stop.abort(err))
        .finally(() => {
          saving = null;
        });
    }, CHECKPOINT_MS);
  try {
    await file.truncate(size);
    if (from > 0) onProgress(from);
    let next = from;
    const worker = async () => {
      try {
        await fetchRanges();
      } catch (err) {
        stop.abort(err);
        throw err;
      }
    };
    const fetchRanges = async () => {
      let range: RangeWrite | undefined;
      const writer = new ChunkWriter(file, 0, (bytes) => {
        if (range) range.written += bytes;
        onProgress(bytes);
        writeback.wrote(bytes);
      });
      writers.push(writer);
      while (next < size) {
        signal.throwIfAborted();
        const start = next;
        const end = Math.min(start + RANGE_BYTES, size) - 1;
        next = end + 1;
        range = { start, end, written: 0 };
        ranges.push(range);
        const stream = await src.driver.read(src.path, { start, end, signal });
        writer.seek(start);
        let at = start;
        try {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            at += chunk.length;
            if (at > end + 1) throw rangeMismatch(src.path, start, end);
            await writer.add(chunk);
          }
          await writer.end();
        } finally {
          stream.destroy();
        }
        if (at !== end + 1) throw rangeMismatch(src.path, start, end);
      }
    };
    const workers = Array.from(
      { length: Math.min(RANGES_IN_FLIGHT, Math.ceil((size - from) / RANGE_BYTES)) },
      worker,
    );
    const results = await Promise.allSettled(workers);
    if (results.some((r) => r.status === 'rejected')) {
      options.signal.throwIfAborted();
      // The first failure, not the echoes of it in the ranges it stopped.
      throw stop.signal.reason;
    }
    await writeback.finish();
  } finally {
    if (checkpoints) clearInterval(checkpoints);
    await saving;
    for (const writer of writers) await writer.settle();
    await file.close();
    for (const writer of writers) writer.free();
  }
}

function rangeMismatch(path: string, start: number, end: number): FerryError {
  return new FerryError('E_BACKEND', `the source sent a wrong length for bytes ${start}-${end} of ${path}`);
}

/**
 * A `ReadInto` over `src` for `Driver.writeRanges`. Every range must arrive exactly: a source that
 * ignores the range or ends early cannot yield a wrong file. A local file is read with positional
 * reads straight into the caller's buffer, so uploading it allocates nothing per chunk.
 */
export function rangeReaderOf(src: Endpoint): ReadInto {
  const local = src.driver.localPath(src.path);
  if (local) return localRangeReader(local, src.path);
  return async (start, into, signal) => {
    let filled = 0;
    for await (const chunk of await readExactRange(src, start, start + into.length - 1, signal)) {
      filled += (chunk as Buffer).copy(into, filled);
    }
  };
}

/** A `ReadInto` over the local file `file` (`shown` names it in errors): positional reads. */
export function localRangeReader(file: string, shown: string): ReadInto {
  return async (start, into, signal) => {
    const handle = await open(file, 'r');
    try {
      for (let filled = 0; filled < into.length; ) {
        signal?.throwIfAborted();
        const { bytesRead } = await handle.read(into, filled, into.length - filled, start + filled);
        if (bytesRead === 0) throw rangeMismatch(shown, start, start + into.length - 1);
        filled += bytesRead;
      }
    } finally {
      await handle.close();
    }
  };
}

async function readExactRange(
  src: Endpoint,
  start: number,
  end: number,
  signal?: AbortSignal,
): Promise<Readable> {
  const source = await src.driver.read(src.path, { start, end, ...(signal && { signal }) });
  const want = end - start + 1;
  let seen = 0;
  const checked = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      done(seen > want ? rangeMismatch(src.path, start, end) : null, chunk);
    },
    flush(done) {
      done(seen === want ? null : rangeMismatch(src.path, start, end));
    },
  });
  source.on('error', (err) => checked.destroy(err));
  checked.on('close', () => source.destroy());
  return source.pipe(checked);
}
