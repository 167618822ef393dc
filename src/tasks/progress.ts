import type { ProgressPatch } from '../store/task-store.ts';
import type { ItemFailure } from './model.ts';

/** What a task kind reports while it runs. The runner writes it to the store, throttled. */
export interface Progress {
  /** Set (or raise) the totals once known; unknown totals stay 0. */
  setTotals(totals: { bytes?: number; files?: number }): void;
  addBytes(bytes: number): void;
  /** One file (or item) finished. */
  fileDone(): void;
  /** One item of a directory task failed; the task goes on with the others. */
  itemFailed(path: string, error: string): void;
  setStatus(status: string): void;
  readonly failedCount: number;
}

const SPEED_WINDOW_MS = 3000;

/** Counters of one running task plus a sliding-window speed. */
export class ProgressTracker implements Progress {
  totalBytes = 0;
  doneBytes = 0;
  totalFiles = 0;
  doneFiles = 0;
  failedFiles = 0;
  status = '';
  readonly failures: ItemFailure[] = [];
  dirty = false;
  /** How many failures the last patch carried: a patch holds a copy of the list, never the list itself. */
  // -1: the first patch of an attempt always carries the list, replacing an earlier attempt's.
  private failuresTaken = -1;
  private readonly samples: { at: number; bytes: number }[] = [];

  constructor(private readonly maxFailures: number) {}

  setTotals(totals: { bytes?: number; files?: number }): void {
    if (totals.bytes !== undefined) this.totalBytes = totals.bytes;
    if (totals.files !== undefined) this.totalFiles = totals.files;
    this.dirty = true;
  }

  addBytes(bytes: number): void {
    this.doneBytes += bytes;
    this.dirty = true;
  }

  fileDone(): void {
    this.doneFiles++;
    this.dirty = true;
  }

  itemFailed(path: string, error: string): void {
    this.failedFiles++;
    if (this.failures.length < this.maxFailures) {
      this.failures.push({ path, error });
    }
    this.dirty = true;
  }

  setStatus(status: string): void {
    this.status = status;
    this.dirty = true;
  }

  get failedCount(): number {
    return this.failedFiles;
  }

  /** Bytes per second over the last few seconds. */
  speed(now = Date.now()): number {
    this.samples.push({ at: now, bytes: this.doneBytes });
    while (this.samples.length > 2 && (this.samples[0]?.at ?? now) < now - SPEED_WINDOW_MS)
      this.samples.shift();
    const first = this.samples[0];
    if (!first || now - first.at < 200) return 0;
    return ((this.doneBytes - first.bytes) * 1000) / (now - first.at);
  }

  /** The counters to write, clearing the dirty flags. */
  take(now = Date.now()): ProgressPatch {
    const patch: ProgressPatch = {
      totalBytes: this.totalBytes,
      doneBytes: this.doneBytes,
      totalFiles: this.totalFiles,
      doneFiles: this.doneFiles,
      failedFiles: this.failedFiles,
      speed: this.speed(now),
      status: this.status,
      ...(this.failures.length !== this.failuresTaken && { failures: [...this.failures] }),
    };
    this.dirty = false;
    this.failuresTaken = this.failures.length;
    return patch;
  }
}
