import { unlink } from 'node:fs/promises';
import { syncFileSystem } from './background-flush.ts';
import { fileThreads, type WriteFailure } from './file-threads.ts';

/** Files staged before one flush of the file system puts them in place... */
const BATCH_FILES = 1000;
/** ...or fewer, when they hold this many bytes. */
const BATCH_BYTES = 64 << 20;

/** One small local file copied by `StagedCopies`. */
export interface StagedFile {
  /** The local file to copy. */
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

/**
 * Many small copies into one local tree, made durable together instead of with an fsync each
 * (which costs more than the copy): each file is copied to its temp name by a small-file thread,
 * without an fsync. Every `BATCH_FILES` files (or `BATCH_BYTES`) one `sync -f` of the file system
 * makes the batch's bytes durable, and only then are the files put under their names; those names
 * are durable after the next flush, and then each file's `done` runs. So no name ever shows a file
 * whose bytes a crash could lose, and nothing is reported done (or deleted at the source) before
 * it is durable. `finish` flushes what is left; `abandon` removes temp files not yet in place.
 * Flushes run one after another, beside the copying of the next batch.
 */
export class StagedCopies {
  private staged: StagedFile[] = [];
  private stagedBytes = 0;
  /** Put in place since the last flush: their names are not durable yet. */
  private placed: StagedFile[] = [];
  /** Temp files written and not yet placed or removed. */
  private readonly unplaced = new Set<string>();
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    /** A folder on the file system the copies go to. */
    private readonly root: string,
    private readonly signal: AbortSignal,
  ) {}

  /**
   * Copy `file.src` to `file.temp` (throws the thread's `WriteFailure`); it is put in place with
   * its batch. Waits for the flush before last, so copying runs at most one batch ahead.
   */
  async add(file: StagedFile, size: number): Promise<void> {
    this.unplaced.add(file.temp);
    try {
      await fileThreads.stage(file.src, file.temp);
    } catch (err) {
      this.unplaced.delete(file.temp); // the thread removed it
      throw err;
    }
    this.staged.push(file);
    this.stagedBytes += size;
    if (this.staged.length >= BATCH_FILES || this.stagedBytes >= BATCH_BYTES) {
      const previous = this.flushing;
      this.startFlush();
      await previous.catch(() => undefined); // its failure is `finish`'s to report
    }
  }

  /** Flush and place what is staged, then make the names durable; throws when a flush failed. */
  async finish(): Promise<void> {
    this.startFlush();
    await this.flushing;
    if (this.placed.length > 0) await this.flush([]);
  }

  /** After a failure or a cancel: wait for a running flush, then remove the unplaced temp files. */
  async abandon(): Promise<void> {
    await this.flushing.catch(() => undefined);
    await Promise.all([...this.unplaced].map((temp) => unlink(temp).catch(() => undefined)));
    this.unplaced.clear();
  }

  private startFlush(): void {
    const batch = this.staged;
    this.staged = [];
    this.stagedBytes = 0;
    this.flushing = this.flushing.then(() => this.flush(batch));
  }

  private async flush(batch: StagedFile[]): Promise<void> {
    if (batch.length === 0 && this.placed.length === 0) return;
    // The batch's bytes, and the names placed by the flush before.
    await syncFileSystem(this.root, this.signal);
    const durable = this.placed;
    this.placed = [];
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
    await Promise.all(durable.map((file) => file.done()));
  }
}
