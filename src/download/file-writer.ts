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

/** A slow download writes what it gathered after this long, so the file and the progress keep up. */
const GATHER_MS = 50;

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
 * up to `WRITE_BYTES` (or for `GATHER_MS`) and written with one `writev` (on libuv's thread pool,
 * never blocking the event loop), one write at a time. What arrives meanwhile queues, up to
 * `QUEUED_BYTES`, then the source is paused: the network and the disk work at the same time, and
 * memory stays the same whatever the file's size. The rest goes out when the stream ends
 * (`end()`); the file handle stays the caller's to close. Positions rather than append mode: a
 * resumed download writes on from the end of what it kept.
 */
export class FileWriter extends Writable {
  /** Where the next gathered byte will go. */
  private next: number;
  /** Where the bytes written so far end. */
  private written: number;
  private gathered: Buffer[] = [];
  private gatheredBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The writes started, one after the other. */
  private writes: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: FileHandle,
    private readonly options: FileWriterOptions,
  ) {
    super({ highWaterMark: QUEUED_BYTES, decodeStrings: true });
    this.next = options.position;
    this.written = options.position;
  }

  /** Where the bytes written end: the file's length, once the writer finished. */
  get bytesEnd(): number {
    return this.written;
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

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    callback(err);
  }

  /** Gather `buffers`; write once enough is gathered, or soon. */
  private take(buffers: Buffer[], callback: (err?: Error | null) => void): void {
    let bytes = 0;
    for (const b of buffers) bytes += b.length;
    const max = this.options.maxBytes;
    if (max > 0 && this.next + this.gatheredBytes + bytes > max) {
      callback(new FerryError('E_BAD_REQUEST', `download exceeds offlineDownload.maxBytes (${max})`));
      return;
    }
    this.gathered.push(...buffers);
    this.gatheredBytes += bytes;
    if (this.gatheredBytes >= WRITE_BYTES) {
      this.flush().then(() => callback(), callback);
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.flush().catch((err: Error) => this.destroy(err));
    }, GATHER_MS);
    callback();
  }

  /** Start writing what is gathered after the writes already started; resolves once it is written. */
  private flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const buffers = this.gathered;
    const bytes = this.gatheredBytes;
    const position = this.next;
    this.gathered = [];
    this.gatheredBytes = 0;
    this.next += bytes;
    if (bytes > 0) this.writes = this.writes.then(() => this.writeAt(buffers, bytes, position));
    return this.writes;
  }

  private async writeAt(buffers: Buffer[], bytes: number, position: number): Promise<void> {
    let pending = buffers;
    let at = position;
    while (pending.length > 0) {
      const { bytesWritten } = await this.file.writev(pending, at);
      if (bytesWritten === 0) throw new FerryError('E_BACKEND', 'the file system took no bytes');
      at += bytesWritten;
      pending = rest(pending, bytesWritten);
    }
    this.written = position + bytes;
    this.options.onWritten(bytes);
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
