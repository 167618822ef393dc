import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { FerryError } from '../errors.ts';

/** Bytes that may wait in the writer while a write runs; past them the body stream is paused. */
const QUEUED_BYTES = 4 * 1024 * 1024;

/**
 * Bytes gathered before a write is started. A socket hands over 64 KiB at a time; writing each
 * piece on its own would cost a trip to the thread pool (and a thread switch) per piece.
 */
const WRITE_BYTES = 1024 * 1024;

export interface FileWriterOptions {
  /** Where the first byte goes; later ones follow it. */
  position: number;
  /** The file may not grow past this many bytes (0: no limit); the write fails with `E_BAD_REQUEST`. */
  maxBytes: number;
  /** Called after each write with the bytes it put in the file. */
  onWritten(bytes: number): void;
}

/**
 * A `Writable` that puts what it is given into `file` at explicit positions: pieces are gathered
 * up to `WRITE_BYTES` and written with one `writev` (on libuv's thread pool, never blocking the
 * event loop), awaited before the next. What arrives meanwhile queues, up to `QUEUED_BYTES`, then
 * the source is paused: the network and the disk work at the same time, and memory stays the
 * same whatever the file's size. The rest goes out when the stream ends (`end()`); the file handle
 * stays the caller's to close. Positions rather than append mode: a resumed download writes on
 * from the end of what it kept.
 */
export class FileWriter extends Writable {
  private position: number;
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;

  constructor(
    private readonly file: FileHandle,
    private readonly options: FileWriterOptions,
  ) {
    super({ highWaterMark: QUEUED_BYTES, decodeStrings: true });
    this.position = options.position;
  }

  /** Where the next byte goes: the file's length so far, once the writer finished. */
  get bytesEnd(): number {
    return this.position;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.take([chunk], callback);
  }

  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (err?: Error | null) => void,
  ): void {
    this.take(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.flush().then(() => callback(), callback);
  }

  /** Gather `buffers`; write once enough is gathered. */
  private take(buffers: Buffer[], callback: (err?: Error | null) => void): void {
    let bytes = 0;
    for (const b of buffers) bytes += b.length;
    const max = this.options.maxBytes;
    if (max > 0 && this.position + this.gatheredBytes + bytes > max) {
      callback(new FerryError('E_BAD_REQUEST', `download exceeds offlineDownload.maxBytes (${max})`));
      return;
    }
    this.gathered.push(...buffers);
    this.gatheredBytes += bytes;
    if (this.gatheredBytes < WRITE_BYTES) callback();
    else this.flush().then(() => callback(), callback);
  }

  /** Write what is gathered at the current position. */
  private async flush(): Promise<void> {
    let pending = this.gathered;
    const bytes = this.gatheredBytes;
    this.gathered = [];
    this.gatheredBytes = 0;
    let at = this.position;
    while (pending.length > 0) {
      const { bytesWritten } = await this.file.writev(pending, at);
      if (bytesWritten === 0) throw new FerryError('E_BACKEND', 'the file system took no bytes');
      at += bytesWritten;
      pending = rest(pending, bytesWritten);
    }
    this.position = at;
    if (bytes > 0) this.options.onWritten(bytes);
  }
}

/** What is left of `buffers` once their first `written` bytes are written (a short write). */
function rest(buffers: Buffer[], written: number): Buffer[] {
  let skip = written;
  const out: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
