import type { Worker } from 'node:worker_threads';
import type { FileFailure, FileReply, FileRequest, ListedEntry } from './file-thread-messages.ts';
import { freeMemory } from './free-buffer.ts';
import { startModuleThread } from './module-thread.ts';

/**
 * At most this many threads. One starts whenever every running one is busy: writes are bound by
 * CPU (two cores on the machines ferry is built for), but a copy waits for its fsync, and fsyncs
 * that run side by side share the file system's journal commits. Each thread costs about 9 MB.
 */
const MAX_THREADS = 4;
/**
 * Threads with nothing to do for this long end (the next extraction starts them again), and the
 * memory kept for the next writes is given back.
 */
const IDLE_MS = 10_000;
/** Memory of finished writes kept for the next ones, at most this much. */
const POOL_BYTES = 32 << 20;
/** Buffers are sized in steps of this. */
const POOL_STEP = 16 << 10;

/** A failed write: the errno code of the call that failed (`EINWAY`: a folder is in the way). */
export class WriteFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  static of(failure: FileFailure): WriteFailure {
    return new WriteFailure(failure.code, failure.message);
  }
}

/** A request as `send` takes it: the id is its own to give. */
type Unsent<R> = R extends FileRequest ? Omit<R, 'id'> : never;

interface Thread {
  worker: Worker;
  busy: number;
}

/**
 * The process's small-file threads (`file-thread.ts`), started on first use. `write` and `copy`
 * hand a file to the least busy thread and resolve once it is in place.
 */
export class FileThreads {
  private threads: Thread[] = [];
  private readonly waiting = new Map<number, { resolve(reply: FileReply): void; reject(err: Error): void }>();
  private nextId = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Memory the threads gave back, reused: fresh memory costs a page fault per page. */
  private free: ArrayBuffer[] = [];
  private freeBytes = 0;
  /** Memory handed out by `buffer()`, which `write` may pass to a thread without copying. */
  private readonly lent = new WeakSet<ArrayBuffer>();

  constructor(private readonly idleMs = IDLE_MS) {}

  /** Bytes kept for the next writes (for tests). */
  get pooledBytes(): number {
    return this.freeBytes;
  }

  /** A buffer of `size` bytes (uninitialised) for a file's bytes, to be passed to `write`. */
  buffer(size: number): Buffer {
    const i = this.free.findIndex(
      (b) => b.byteLength >= size && b.byteLength <= Math.max(2 * size, POOL_STEP),
    );
    let memory: ArrayBuffer;
    if (i >= 0) {
      memory = this.free[i] as ArrayBuffer;
      this.free.splice(i, 1);
      this.freeBytes -= memory.byteLength;
    } else {
      memory = new ArrayBuffer(Math.ceil(Math.max(size, 1) / POOL_STEP) * POOL_STEP);
    }
    this.lent.add(memory);
    return Buffer.from(memory, 0, size);
  }

  private giveBack(memory: ArrayBuffer): void {
    if (memory.byteLength === 0 || this.freeBytes + memory.byteLength > POOL_BYTES) return;
    this.free.push(memory);
    this.freeBytes += memory.byteLength;
  }

  /**
   * Write `data` to `temp`, then rename it to `final` (with `overwrite`) or link it there (without:
   * an existing name fails). `data` from `buffer()` is handed to the thread and must not be used
   * again; any other is copied. Not fsynced unless `sync`.
   */
  async write(
    temp: string,
    final: string,
    data: Buffer,
    options: { overwrite: boolean; sync?: boolean },
  ): Promise<void> {
    let view = data;
    if (view.byteOffset !== 0 || !this.lent.has(view.buffer as ArrayBuffer)) {
      view = this.buffer(data.length);
      data.copy(view);
    }
    const buffer = view.buffer as ArrayBuffer;
    this.lent.delete(buffer);
    await this.send({
      op: 'write',
      temp,
      final,
      buffer,
      length: data.length,
      overwrite: options.overwrite,
      sync: options.sync === true,
    });
  }

  /**
   * Copy the local file `src` to `temp` (replacing a leftover temp file, never writing through
   * it), fsync it (unless `sync` is false), then put it at `final` as `write` does. For small
   * files: the thread is busy for the whole copy.
   */
  async copy(
    src: string,
    temp: string,
    final: string,
    options: { overwrite: boolean; sync?: boolean },
  ): Promise<void> {
    await this.send({
      op: 'copy',
      from: src,
      temp,
      final,
      overwrite: options.overwrite,
      sync: options.sync !== false,
    });
  }

  /**
   * Copy each local file `from` to its `temp` name as `copy` does, but neither fsync it nor put it
   * in place, in one message; per file, null when copied, else its failure (`ELOOP`: `from` is a
   * link, which is not followed).
   */
  async stage(items: { from: string; temp: string }[]): Promise<(WriteFailure | null)[]> {
    return failures(await this.send({ op: 'stage', items }));
  }

  /**
   * Put staged temp files in place, each as `write` would, in one message; per file, null when it
   * is in place, else its failure (its temp file is then removed).
   */
  async place(
    items: { temp: string; final: string; overwrite: boolean }[],
  ): Promise<(WriteFailure | null)[]> {
    return failures(await this.send({ op: 'place', items }));
  }

  /** One `sync -f` (syncfs(2)) of the file system `path` is on; rejects when it failed. */
  async syncFileSystem(path: string): Promise<void> {
    await this.send({ op: 'sync-fs', path });
  }

  /** The names in the local folder `dir` with their lstat, read in one message. */
  async list(dir: string): Promise<ListedEntry[]> {
    const reply = await this.send({ op: 'list', dir });
    if (reply.op !== 'listed') throw unexpected(reply);
    return reply.entries;
  }

  /**
   * The files below the folder `dir` and their bytes, counted in one message (names starting
   * with `skip` left out); the links met are not followed but returned, relative to `dir`.
   */
  async measure(dir: string, skip: string): Promise<{ files: number; bytes: number; links: string[] }> {
    const reply = await this.send({ op: 'measure', dir, skip });
    if (reply.op !== 'measured') throw unexpected(reply);
    const { files, bytes, links } = reply;
    return { files, bytes, links };
  }

  /** Resolves with the reply to `fields`, or rejects with a `WriteFailure` when it failed. */
  private send(fields: Unsent<FileRequest>): Promise<FileReply> {
    const thread = this.pick();
    const req: FileRequest = { ...fields, id: this.nextId++ };
    thread.busy++;
    thread.worker.ref();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    return new Promise<FileReply>((resolve, reject) => {
      this.waiting.set(req.id, { resolve, reject });
      const transfer = req.op === 'write' && req.buffer.byteLength > 0 ? [req.buffer] : [];
      thread.worker.postMessage(req, transfer);
    }).finally(() => {
      thread.busy--;
      // An idle thread keeps no process alive.
      if (thread.busy === 0) thread.worker.unref();
      if (this.waiting.size === 0) this.stopWhenIdle();
    });
  }

  private pick(): Thread {
    const idle = this.threads.find((t) => t.busy === 0);
    if (idle) return idle;
    if (this.threads.length < MAX_THREADS) {
      const thread = this.start();
      this.threads.push(thread);
      return thread;
    }
    return this.threads.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  private start(): Thread {
    const worker = startModuleThread('file-thread', import.meta.url);
    worker.on('message', (reply: FileReply) => {
      if ((reply.op === 'done' || reply.op === 'failed') && reply.buffer) this.giveBack(reply.buffer);
      const w = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (!w) return;
      if (reply.op === 'failed') w.reject(WriteFailure.of(reply.failure));
      else w.resolve(reply);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => {
      if (this.threads.some((t) => t.worker === worker))
        this.fail(new Error(`small-file thread exited with ${code}`));
    });
    // Only a thread with a write in progress keeps the process alive (after the listeners: adding
    // a 'message' listener refs the thread again).
    worker.unref();
    return { worker, busy: 0 };
  }

  /** A thread died: every write waiting fails and the threads start afresh next time. */
  private fail(err: Error): void {
    const threads = this.threads;
    this.threads = [];
    for (const t of threads) void t.worker.terminate();
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  private stopWhenIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.waiting.size > 0) return;
      const threads = this.threads;
      this.threads = [];
      for (const t of threads) void t.worker.terminate();
      // Left to the garbage collector, an extraction's buffers (up to POOL_BYTES) would stay
      // with an idle server: nothing refers to them, but nothing collects them for minutes.
      for (const memory of this.free) freeMemory(memory);
      this.free = [];
      this.freeBytes = 0;
    }, this.idleMs);
    this.idleTimer.unref();
  }
}

function failures(reply: FileReply): (WriteFailure | null)[] {
  if (reply.op !== 'each') throw unexpected(reply);
  return reply.failures.map((f) => (f ? WriteFailure.of(f) : null));
}

/** A reply of the wrong kind: the two sides of the thread disagree, which is a bug. */
function unexpected(reply: FileReply): Error {
  return new Error(`small-file thread: unexpected reply '${reply.op}'`);
}

export const fileThreads = new FileThreads();
