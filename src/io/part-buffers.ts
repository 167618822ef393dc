import { FerryError } from '../errors.ts';
import { freeBuffer } from './free-buffer.ts';

/** How long buffers no upload needs are kept for the next one before their memory goes back. */
const KEEP_IDLE_MS = 2000;

/**
 * Buffers for the parts of multipart uploads, shared by every upload of the process, with a
 * budget: at most `maxBytes` handed out at once (one buffer more than that is never refused, so
 * a part larger than the budget still goes, alone). A tree of mid-size files uploaded eight at a
 * time then holds no more memory than one large file does; an upload waits for a buffer instead.
 * Each buffer is held for one part (read, then sent), never two at once, so waiting cannot
 * deadlock. Buffers given back are reused; once none has been taken for a while, their memory is
 * given back to the system (`freeBuffer`) rather than left to the garbage collector.
 */
export class PartBuffers {
  private lent = 0;
  private spare: Buffer[] = [];
  private readonly waiting: (() => void)[] = [];
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(private readonly maxBytes: number) {}

  /** A buffer of exactly `size` bytes (uninitialised); waits while the budget is spent. */
  async take(size: number, signal?: AbortSignal): Promise<Buffer> {
    while (this.lent > 0 && this.lent + size > this.maxBytes) await this.turn(signal);
    signal?.throwIfAborted();
    this.lent += size;
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    const i = this.spare.findIndex((b) => b.length === size);
    if (i >= 0) return this.spare.splice(i, 1)[0] as Buffer;
    return Buffer.allocUnsafeSlow(size);
  }

  /** Give back a buffer from `take`, once no request reads it any more. */
  give(buffer: Buffer): void {
    this.lent -= buffer.length;
    this.spare.push(buffer);
    let spareBytes = this.spare.reduce((n, b) => n + b.length, 0);
    // Spares beyond the budget (left by parts of another size) go at once.
    while (this.lent + spareBytes > this.maxBytes && this.spare.length > 0) {
      const dropped = this.spare.shift() as Buffer;
      spareBytes -= dropped.length;
      freeBuffer(dropped);
    }
    for (const wake of this.waiting.splice(0)) wake();
    if (this.lent === 0 && !this.idleTimer) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        for (const b of this.spare.splice(0)) freeBuffer(b);
      }, KEEP_IDLE_MS);
      this.idleTimer.unref();
    }
  }

  /**
   * Account for a buffer from `take` that a failed or aborted request may still be reading: it
   * counts no more against the budget, and is neither reused nor freed (the garbage collector
   * frees it once that request lets go).
   */
  forget(buffer: Buffer): void {
    this.lent -= buffer.length;
    for (const wake of this.waiting.splice(0)) wake();
  }

  /** Bytes handed out and not given back (for tests). */
  get lentBytes(): number {
    return this.lent;
  }

  /** Bytes kept for reuse (for tests). */
  get spareBytes(): number {
    return this.spare.reduce((n, b) => n + b.length, 0);
  }

  /** Resolves at the next `give`; rejects when `signal` aborts first. */
  private turn(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new FerryError('E_CANCELED', 'canceled'));
      const onAbort = () => {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new FerryError('E_CANCELED', 'canceled'));
      };
      const wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(wake);
    });
  }
}
