import { Readable, Writable } from 'node:stream';
import { FerryError } from '../../errors.ts';
import type { ReadOptions } from '../driver.ts';
import { call, lostError, type Session } from './session.ts';

/** Bytes per read/write request: ssh2 caps a request at 34,000 bytes less 2 KiB of overhead for
 * servers other than OpenSSH, and splits anything larger into requests sent one after another. */
const PIECE = 31 * 1024;
/** Requests in flight per stream: enough to hide the round trip, ~0.5 MB of memory. */
const IN_FLIGHT = 16;

/**
 * A remote file's bytes `start..end` (inclusive), with up to IN_FLIGHT reads outstanding and
 * pushed in order. Closes the handle when done, destroyed, aborted (`E_CANCELED`) or when the
 * connection drops (`E_BACKEND`).
 */
export class RemoteFileReader extends Readable {
  private next: number;
  private readonly last: number;
  private readonly pending: { bytes: Promise<Buffer>; length: number }[] = [];
  private handle: Buffer | null;
  private readonly onAbort = () => this.destroy(new FerryError('E_CANCELED', 'canceled'));
  private readonly onLost = () => this.destroy(lostError(this.session, this.path));

  constructor(
    private readonly session: Session,
    handle: Buffer,
    private readonly path: string,
    private readonly options: ReadOptions,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.handle = handle;
    this.next = options.start ?? 0;
    this.last = options.end ?? Number.POSITIVE_INFINITY;
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    session.lost.addEventListener('abort', this.onLost, { once: true });
  }

  override _read(): void {
    while (this.pending.length < IN_FLIGHT && this.next <= this.last) {
      const length = Math.min(PIECE, this.last - this.next + 1);
      const bytes = this.piece(this.next, length);
      bytes.catch(() => undefined); // consumed below, or dropped after an error or the end
      this.pending.push({ bytes, length });
      this.next += length;
    }
    const head = this.pending.shift();
    if (!head) {
      this.push(null);
      return;
    }
    head.bytes.then(
      (buf) => {
        if (this.destroyed) return;
        if (buf.length < head.length) {
          // End of file: later pieces lie beyond it.
          this.pending.length = 0;
          this.next = Number.POSITIVE_INFINITY;
          if (buf.length > 0) this.push(buf);
          this.push(null);
        } else {
          this.push(buf);
        }
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  /** Bytes at `position`, fewer only at the end of the file (servers may answer short reads). */
  private async piece(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length && this.handle) {
      const handle = this.handle;
      const n = await call<number>(this.session, this.path, (done) =>
        this.session.sftp.read(handle, buf, got, length - got, position + got, done),
      );
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.session.lost.removeEventListener('abort', this.onLost);
    const handle = this.handle;
    this.handle = null;
    closeQuietly(this.session, this.path, handle).then(() => done(err));
  }
}

/**
 * Writes to an open remote file with up to IN_FLIGHT write requests outstanding; `_final` waits
 * for every answer and closes the handle, so the file is complete when the stream finishes.
 * Reports acknowledged bytes to `onProgress`. Fails with `E_BACKEND` when the connection drops.
 */
export class RemoteFileWriter extends Writable {
  private position = 0;
  private inFlight = 0;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private handle: Buffer | null;
  private readonly onLost = () => this.destroy(lostError(this.session, this.path));

  constructor(
    private readonly session: Session,
    handle: Buffer,
    private readonly path: string,
    private readonly onProgress?: (bytes: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.handle = handle;
    session.lost.addEventListener('abort', this.onLost, { once: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.send(chunk).then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.settle()
      .then(() => {
        const handle = this.handle;
        this.handle = null;
        if (handle) return call(this.session, this.path, (cb) => this.session.sftp.close(handle, cb));
      })
      .then(() => done(), done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.session.lost.removeEventListener('abort', this.onLost);
    this.wake?.();
    const handle = this.handle;
    this.handle = null;
    closeQuietly(this.session, this.path, handle).then(() => done(err));
  }

  private async send(chunk: Buffer): Promise<void> {
    for (let offset = 0; offset < chunk.length; offset += PIECE) {
      while (this.inFlight >= IN_FLIGHT && !this.failure && !this.destroyed) await this.waitForAnswer();
      if (this.failure) throw this.failure;
      const handle = this.handle;
      if (!handle || this.destroyed) throw new FerryError('E_BACKEND', `write to ${this.path} was stopped`);
      const piece = chunk.subarray(offset, offset + PIECE);
      const at = this.position;
      this.position += piece.length;
      this.inFlight++;
      call(this.session, this.path, (cb) => this.session.sftp.write(handle, piece, 0, piece.length, at, cb))
        .then(
          () => {
            if (!this.destroyed) this.onProgress?.(piece.length);
          },
          (err: unknown) => {
            this.failure ??= err as Error;
          },
        )
        .finally(() => {
          this.inFlight--;
          this.wake?.();
        });
    }
  }

  /** Wait until every write is answered; the first failure, if any, is thrown. */
  private async settle(): Promise<void> {
    while (this.inFlight > 0 && !this.destroyed) await this.waitForAnswer();
    if (this.failure) throw this.failure;
  }

  private waitForAnswer(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = null;
        resolve();
      };
    });
  }
}

/** Close a stream's remote handle (if still open) as it is destroyed: its failure is not the stream's. */
async function closeQuietly(session: Session, path: string, handle: Buffer | null): Promise<void> {
  if (!handle) return;
  await call(session, path, (cb) => session.sftp.close(handle, cb)).catch(() => undefined);
}
