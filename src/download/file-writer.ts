import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { FerryError } from '../errors.ts';

/** Bytes that may wait in the writer while a write runs; past them the body stream is paused. */
const QUEUED_BYTES = 4 * 1024 * 1024;

export interface FileWriterOptions {
  /** Where the first byte goes; later ones follow it. */
  position: number;
  /** The file may not grow past this many bytes (0: no limit); the write fails with `E_BAD_REQUEST`. */
  maxBytes: number;
  /** Called after each write with the bytes it put in the file. */
  onWritten(bytes: number): void;
}

/**
 * A `Writable` that puts what it is given into `file` at explicit positions, one write at a time
 * (on libuv's thread pool, never blocking the event loop), each awaited before the next. What
 * arrives meanwhile queues, up to `QUEUED_BYTES`, and goes out as one `writev`: the network and
 * the disk work at the same time, and memory stays the same whatever the file's size. The file
 * handle stays the caller's to close. Positions rather than append mode: a resumed download writes
 * on from the end of what it kept.
 */
export class FileWriter extends Writable {
  private position: number;

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
    this.put([chunk]).then(() => callback(), callback);
  }

  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (err?: Error | null) => void,
  ): void {
    this.put(chunks.map((c) => c.chunk)).then(() => callback(), callback);
  }

  private async put(buffers: Buffer[]): Promise<void> {
    let bytes = 0;
    for (const b of buffers) bytes += b.length;
    const max = this.options.maxBytes;
    if (max > 0 && this.position + bytes > max)
      throw new FerryError('E_BAD_REQUEST', `download exceeds offlineDownload.maxBytes (${max})`);
    let pending = buffers;
    let at = this.position;
    for (;;) {
      const { bytesWritten } = await this.file.writev(pending, at);
      if (bytesWritten === 0) throw new FerryError('E_BACKEND', 'the file system took no bytes');
      at += bytesWritten;
      pending = rest(pending, bytesWritten);
      if (pending.length === 0) break;
    }
    this.position = at;
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
