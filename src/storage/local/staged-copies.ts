import { unlink } from 'node:fs/promises';
import { syncFileSystem } from '../../io/background-flush.ts';
import { fileThreads, type WriteFailure } from '../../io/file-threads.ts';

/** Files staged before one flush of the file system puts them in place... */
const BATCH_FILES = 1000;
/** ...or fewer, when they hold this many bytes. */
const BATCH_BYTES = 64 << 20;

/** One small local file copied by `StagedCopies`. */
export interface StagedFile {
  /** The local file to copy (a link there is not followed: the file fails with `ELOOP`). */
  src: string;
  /** Its temp name beside `final` (from the task's id, so a retry replaces a leftover). */
  temp: string;
  final: string;
  overwrite: boolean;
  /** It is in place: its bytes are durable (its name will be by the time `done` runs). */
  placed(): void;
  /** It could not be put in place (its temp file is gone); `failure.code` says why. */
  failed(failure: WriteFailure): void;
  /** Its name is durable too: a move may now delete the source. */
  done(): Promise<void>;
}

/** Files copied per message to a small-file thread: a message costs more than a small copy. */
const STAGE_CHUNK = 64;
/**
 * Messages of copies out at once, one per thread. Two keep the copying ahead of the event loop,
 * which prepares them: on two cores, more threads only preempt the event loop each time it wakes
 * one.
 */
const STAGE_MESSAGES = 2;
/** Files waiting to be copied before `add` waits. */
const MAX_QUEUED = 512;

/**
 * Many small copies into one local tree, made durable together instead of with an fsync each
 * (which costs more than the copy): small-file threads copy the files to their temp names, many
 * per message, without an fsync. Every `BATCH_FILES` files (or `BATCH_BYTES`) one `sync -f` of the
 * file system makes the batch's bytes durable, and only then are the files put under their names;
 * those names are durable after the next flush, and then each file's `done` runs. So no name ever
 * shows a file whose bytes a crash could lose, and nothing is reported done (or deleted at the
 * source) before it is durable. `add` returns once the file is queued (a failure to copy it is
 * reported through its `failed`); `finish` copies, flushes and places what is left; `abandon`
 * removes the temp files not yet in place. Flushes run one after another, beside the copying.
 * With `sync` false (`syncFiles`), the batches are placed the same way without the `sync -f`, and
 * each file is done once it is in place.
 */
export class StagedCopies {
  /** Files to copy, in order. */
  private queue: { file: StagedFile; size: number }[] = [];
  private messagesOut = 0;
  /** Copied, waiting for their batch's flush. */
  private staged: StagedFile[] = [];
  private stagedBytes = 0;
  /** Put in place since the last flush: their names are not durable yet. */
  private placed: StagedFile[] = [];
  /** Temp files that may exist and are not placed yet. */
  private readonly unplaced = new Set<string>();
  private flushing: Promise<void> = Promise.resolve();
  private flushesPending = 0;
  /** The first failure that is not one file's own: it fails the whole copy. */
  private error: unknown = null;
  private wakeups: (() => void)[] = [];

  constructor(
    /** A folder on the file system the copies go to. */
    private readonly root: string,
    private readonly signal: AbortSignal,
    private readonly sync: boolean,
    /** Awaited before each batch is put in place (`WriteOptions.beforePlace`). */
    private readonly beforePlace?: () => Promise<void>,
  ) {}

  /**
   * Queue `file` to be copied and placed with its batch. Waits while many files are queued or two
   * flushes are pending, so copying runs at most about one batch ahead of the flushes.
   */
  async add(file: StagedFile, size: number): Promise<void> {
    if (this.error !== null) throw this.error;
    this.unplaced.add(file.temp);
    this.queue.push({ file, size });
    this.pump();
    while (this.error === null && (this.queue.length >= MAX_QUEUED || this.flushesPending > 1)) {
      await this.nextChange();
    }
  }

  /** Copy, flush and place what is left, then make the names durable; throws when a flush failed. */
  async finish(): Promise<void> {
    while (this.error === null && (this.queue.length > 0 || this.messagesOut > 0)) await this.nextChange();
    if (this.error !== null) throw this.error;
    this.startFlush();
    await this.flushing;
    if (this.placed.length > 0) await this.flush([]);
  }

  /** After a failure or a cancel: let running work end, then remove the unplaced temp files. */
  async abandon(): Promise<void> {
    for (const { file } of this.queue) this.unplaced.delete(file.temp); // never written
    this.queue = [];
    while (this.messagesOut > 0) await this.nextChange();
    await this.flushing.catch(() => undefined);
    await Promise.all([...this.unplaced].map((temp) => unlink(temp).catch(() => undefined)));
    this.unplaced.clear();
  }

  /** Send queued files to the threads, a chunk per message, while fewer than `STAGE_MESSAGES` are out. */
  private pump(): void {
    while (this.queue.length > 0 && this.messagesOut < STAGE_MESSAGES && this.error === null) {
      const chunk = this.queue.splice(0, STAGE_CHUNK);
      this.messagesOut++;
      fileThreads
        .stage(chunk.map(({ file }) => ({ from: file.src, temp: file.temp })))
        .then((failures) => {
          for (const [i, { file, size }] of chunk.entries()) {
            const failure = failures[i];
            if (failure) {
              this.unplaced.delete(file.temp); // the thread removed it
              file.failed(failure);
            } else {
              this.staged.push(file);
              this.stagedBytes += size;
            }
          }
          if (this.staged.length >= BATCH_FILES || this.stagedBytes >= BATCH_BYTES) this.startFlush();
        })
        .catch((err: unknown) => {
          this.error ??= err;
        })
        .finally(() => {
          this.messagesOut--;
          this.pump();
          this.changed();
        });
    }
  }

  private startFlush(): void {
    const batch = this.staged;
    this.staged = [];
    this.stagedBytes = 0;
    this.flushesPending++;
    this.flushing = this.flushing
      .then(() => this.flush(batch))
      .catch((err: unknown) => {
        this.error ??= err;
        throw err;
      })
      .finally(() => {
        this.flushesPending--;
        this.changed();
      });
    // `finish` or `abandon` takes the failure, maybe much later: until then it must not count as
    // an unhandled rejection, which would end the process.
    this.flushing.catch(() => undefined);
  }

  private async flush(batch: StagedFile[]): Promise<void> {
    if (batch.length === 0 && this.placed.length === 0) return;
    // The batch's bytes, and the names placed by the flush before.
    if (this.sync) await syncFileSystem(this.root, this.signal);
    const durable = this.placed;
    this.placed = [];
    if (batch.length > 0) await this.beforePlace?.();
    const failures =
      batch.length > 0
        ? await fileThreads.place(batch.map(({ temp, final, overwrite }) => ({ temp, final, overwrite })))
        : [];
    for (const [i, file] of batch.entries()) {
      this.unplaced.delete(file.temp);
      const failure = failures[i];
      if (failure) {
        file.failed(failure);
      } else {
        file.placed();
        this.placed.push(file);
      }
    }
    if (!this.sync) {
      // Nothing waits for a flush: a file is done once it has its name.
      durable.push(...this.placed);
      this.placed = [];
    }
    await Promise.all(durable.map((file) => file.done()));
  }

  private nextChange(): Promise<void> {
    return new Promise((resolve) => this.wakeups.push(resolve));
  }

  private changed(): void {
    const wakeups = this.wakeups;
    this.wakeups = [];
    for (const wake of wakeups) wake();
  }
}
