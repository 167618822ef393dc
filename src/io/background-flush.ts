import { open } from 'node:fs/promises';
import { FerryError } from '../errors.ts';
import { fileThreads } from './file-threads.ts';

/** Bytes written between two background flushes started by `wrote`. */
const FLUSH_EVERY_BYTES = 64 * 1024 * 1024;

/** Counts the bytes written and calls `poke()`, which starts a flush, after every 64 MiB of them. */
abstract class PeriodicFlush {
  private unflushed = 0;

  /** `bytes` more were written. */
  wrote(bytes: number): void {
    this.unflushed += bytes;
    if (this.unflushed < FLUSH_EVERY_BYTES) return;
    this.unflushed = 0;
    this.poke();
  }

  abstract poke(): void;
}

/** What a writer tells of its progress so the file reaches the disk (see `BackgroundFlush`). */
export interface Writeback {
  /** `bytes` more were written. */
  wrote(bytes: number): void;
  /** Start flushing what is written so far, unless a flush is running. */
  poke(): void;
  /** The file is complete: make all of it durable. */
  finish(): Promise<void>;
}

/** For a file left to the operating system to write back (`syncFiles` false): does nothing. */
const LEFT_TO_THE_OS: Writeback = {
  wrote() {},
  poke() {},
  async finish() {},
};

/** A `BackgroundFlush` of `path` when `sync`, else a writeback that does nothing. */
export function writebackOf(path: string, sync: boolean): Writeback {
  return sync ? new BackgroundFlush(path) : LEFT_TO_THE_OS;
}

/**
 * Flushes a file to disk while it is still being written, so the fsync at the end waits only for
 * the tail instead of the whole file: writeback overlaps the writing. `poke()` starts a datasync
 * through a descriptor of its own unless one is running (its errors are ignored: the final fsync
 * decides); `wrote(n)` pokes after every 64 MiB written; `finish()` waits for the running flush,
 * then fsyncs the complete file. A flush still running after the writing failed or was canceled
 * ends on its own: nothing needs to wait for it.
 */
export class BackgroundFlush extends PeriodicFlush implements Writeback {
  private running: Promise<void> | null = null;

  constructor(private readonly path: string) {
    super();
  }

  poke(): void {
    this.running ??= syncFile(this.path, 'data')
      .catch(() => undefined) // not there yet, or gone
      .finally(() => {
        this.running = null;
      });
  }

  /** The file is complete: make all of it durable. */
  async finish(): Promise<void> {
    await this.running;
    await syncFile(this.path, 'all');
  }
}

async function syncFile(path: string, what: 'data' | 'all'): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await (what === 'data' ? handle.datasync() : handle.sync());
  } finally {
    await handle.close();
  }
}

/**
 * Make everything written to the file system `path` is on durable: one `sync -f` (syncfs(2)),
 * instead of an fsync per file where there are many (an extracted archive, a torrent). A small-file
 * thread runs it; a cancel stops the wait at once (the flush itself ends on its own).
 */
export async function syncFileSystem(path: string, signal: AbortSignal): Promise<void> {
  const canceled = () => new FerryError('E_CANCELED', 'canceled');
  if (signal.aborted) throw canceled();
  const flushed = fileThreads.syncFileSystem(path).catch((err: unknown) => {
    throw new FerryError('E_BACKEND', `could not flush ${path} to disk`, { cause: err });
  });
  let stopWaiting = () => {};
  const abort = new Promise<never>((_, reject) => {
    stopWaiting = () => reject(canceled());
    signal.addEventListener('abort', stopWaiting, { once: true });
  });
  try {
    await Promise.race([flushed, abort]);
  } finally {
    signal.removeEventListener('abort', stopWaiting);
  }
}

/** The one background `sync -f` of the process that is still running, if any. */
let backgroundSyncfs: Promise<void> | null = null;

/**
 * `BackgroundFlush` for a tool that writes files of its own without flushing them (aria2): after
 * every 64 MiB it is told of, a `sync -f` of the file system `path` is on starts in the
 * background, so the `syncFileSystem` at the end waits for the tail instead of the whole
 * download. One at a time for the process (a syncfs covers every file of the file system,
 * whoever wrote it); errors are ignored, as the final flush decides.
 */
export class FileSystemFlush extends PeriodicFlush {
  constructor(private readonly path: string) {
    super();
  }

  poke(): void {
    if (backgroundSyncfs) return;
    backgroundSyncfs = fileThreads
      .syncFileSystem(this.path)
      .catch(() => undefined)
      .finally(() => {
        backgroundSyncfs = null;
      });
  }
}
