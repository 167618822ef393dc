import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { copyFile, type FileHandle, open, stat, unlink } from 'node:fs/promises';
import { FerryError, fromFsError } from '../../errors.ts';
import { writebackOf } from '../../io/background-flush.ts';

const DEFAULT_CHUNK = 4 * 1024 * 1024;
/** Files up to this size are copied in one step: too small to be worth interrupting. */
const SMALL_FILE = 256 * 1024;
/**
 * Files from this size on are copied by a `cp` child process (see `copyInKernel`) on Linux, when
 * the caller has not asked for a chunk size.
 */
export const KERNEL_COPY_MIN = 128 * 1024 * 1024;
/** How often the size of a file being copied by `cp` is read for progress. */
const KERNEL_PROGRESS_MS = 200;

export interface CopyLocalOptions {
  signal?: AbortSignal;
  /** Called with the number of bytes written since the previous call. */
  onProgress?: (bytes: number) => void;
  /** Bytes per read/write (two buffers of this size are used). Default 4 MiB. */
  chunkSize?: number;
  /** The source's size when the caller knows it (saves a stat). A stale hint is harmless. */
  sizeHint?: number;
  /** Flush the copy to disk before the promise resolves (the default); false leaves it to the OS. */
  sync?: boolean;
}

/**
 * Copy the file `src` to `dst` (both absolute local paths) with a double-buffered read/write
 * loop: the next chunk is read while the previous one is being written. Measured on par with
 * `cp` for multi-GiB files, and unlike `fs.copyFile` it checks `signal` between chunks, so a
 * cancel stops the bytes within one chunk. Memory is two buffers whatever the file size. Only the
 * bytes are copied (no mode, owner or times).
 *
 * `dst` is replaced, never truncated in place: it is unlinked first, so a temp name still
 * hard-linked to a finished file by an interrupted attempt cannot corrupt that file. `dst` is
 * fsynced before the promise resolves, unless `sync` is false. The caller writes to a temporary
 * name, renames it into place and removes it on failure (a failed or canceled copy leaves `dst`
 * partial).
 *
 * Throws `E_CANCELED` when `signal` aborts, `E_NOT_FOUND`/`E_IS_A_DIRECTORY`/`E_NO_SPACE`…
 * (via `fromFsError`) for file-system errors.
 */
export async function copyLocalFile(src: string, dst: string, options: CopyLocalOptions = {}): Promise<void> {
  if (options.signal?.aborted) throw canceled(options.signal);
  if (options.sizeHint !== undefined && options.sizeHint <= SMALL_FILE) {
    await copySmallFile(src, dst, options.sync !== false);
    options.onProgress?.(options.sizeHint);
    return;
  }
  await unlink(dst).catch(() => undefined);
  let size = options.sizeHint;
  if (size === undefined) {
    size = (
      await stat(src).catch((err) => {
        throw fromFsError(err, src);
      })
    ).size;
  }
  if (process.platform === 'linux' && options.chunkSize === undefined && size >= KERNEL_COPY_MIN) {
    await copyInKernel(src, dst, options);
  } else {
    await copyWithLoop(src, dst, { ...options, sizeHint: size });
  }
}

/** The portable path: `copyChunks` between two open files, then fsync (unless `sync` is false). */
async function copyWithLoop(src: string, dst: string, options: CopyLocalOptions): Promise<void> {
  const input = await open(src, 'r').catch((err) => {
    throw fromFsError(err, src);
  });
  try {
    const output = await open(dst, 'w').catch((err) => {
      throw fromFsError(err, dst);
    });
    try {
      const sourceSize = options.sizeHint ?? (await input.stat()).size;
      await copyChunks(input, output, sourceSize, options);
      if (options.sync !== false) await output.sync();
    } finally {
      await output.close();
    }
  } catch (err) {
    throw err instanceof FerryError ? err : fromFsError(err, dst);
  } finally {
    await input.close();
  }
}

/**
 * A large file copied by `cp`, whose bytes never leave the kernel (`copy_file_range`, or a reflink
 * where the file system shares blocks): about twice as fast as the read/write loop for multi-GiB
 * files here, and no buffers in this process. A cancel kills the child at once; progress is the
 * destination's size, read every 200 ms. The copy is fsynced like the loop's (unless `sync` is
 * false). Falls back to the loop when `cp` cannot be started.
 */
async function copyInKernel(src: string, dst: string, options: CopyLocalOptions): Promise<void> {
  const { signal, onProgress } = options;
  let reported = 0;
  const report = async () => {
    const size = await stat(dst).then(
      (s) => s.size,
      () => reported,
    );
    if (size > reported) {
      onProgress?.(size - reported);
      reported = size;
    }
  };
  const child = spawn('cp', ['--reflink=auto', '--', src, dst], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  const kill = () => child.kill('SIGKILL');
  signal?.addEventListener('abort', kill, { once: true });
  // While cp writes, what it has written so far goes to disk: the fsync at the end waits only for
  // the tail.
  const flush = writebackOf(dst, options.sync !== false);
  const timer = setInterval(() => {
    if (onProgress) void report();
    flush.poke();
  }, KERNEL_PROGRESS_MS);
  try {
    const outcome = await new Promise<{ code: number | null; error?: NodeJS.ErrnoException }>((resolve) => {
      child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, error }));
      child.once('close', (code) => resolve({ code }));
    });
    if (signal?.aborted) throw canceled(signal);
    if (outcome.error?.code === 'ENOENT') {
      // No `cp` on this system: the portable loop does the job.
      await copyWithLoop(src, dst, options);
      return;
    }
    if (outcome.code !== 0) {
      const message = stderr.trim() || outcome.error?.message || `cp exited with ${outcome.code}`;
      if (/No space left|Disk quota/i.test(message))
        throw new FerryError('E_NO_SPACE', `out of space writing ${dst}`);
      if (/No such file/i.test(message)) throw new FerryError('E_NOT_FOUND', `not found: ${src}`);
      throw new FerryError('E_BACKEND', `copying ${src}: ${message}`);
    }
    clearInterval(timer);
    await flush.finish().catch((err) => {
      throw fromFsError(err, dst);
    });
    await report();
  } finally {
    // A flush still running after a failure or cancel ends on its own: waiting for it would delay
    // the cancel.
    clearInterval(timer);
    signal?.removeEventListener('abort', kill);
  }
}

/** The read/write loop: reads chunk i while chunk i-1 is written from the other buffer. */
async function copyChunks(
  input: FileHandle,
  output: FileHandle,
  sourceSize: number,
  options: CopyLocalOptions,
): Promise<void> {
  // Small files get small buffers: two 4 MiB buffers per tiny file would keep the GC busy. The
  // +1 lets a file that fits in one buffer end with a short read instead of a second, empty one.
  const length = Math.max(1, Math.min(options.chunkSize ?? DEFAULT_CHUNK, sourceSize + 1));
  const buffers = [Buffer.allocUnsafe(length), Buffer.allocUnsafe(length)];
  let position = 0;
  let writing: Promise<void> | null = null;
  try {
    for (let i = 0; ; i++) {
      if (options.signal?.aborted) throw canceled(options.signal);
      const buffer = buffers[i & 1] as Buffer;
      const { bytesRead } = await input.read(buffer, 0, length, position);
      if (writing) await writing;
      writing = null;
      if (bytesRead === 0) return;
      const written = bytesRead;
      writing = writeAll(output, buffer, written, position).then(() => options.onProgress?.(written));
      // Awaited after the next read: a write that fails meanwhile (ENOSPC) must not count as an
      // unhandled rejection until then, which would end the process.
      writing.catch(() => undefined);
      position += written;
      // A short read at or past the known size is the end: skip the empty read that would
      // confirm it. A short read before it (FUSE and network file systems do that) is not.
      if (bytesRead < length && position >= sourceSize) {
        await writing;
        return;
      }
    }
  } finally {
    // On abort or a read error, a write may still be in flight: wait for it so its buffer is
    // free and its rejection is not left unhandled (that would crash the process).
    await writing?.catch(() => undefined);
  }
}

async function writeAll(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let offset = 0;
  while (offset < length) {
    const { bytesWritten } = await handle.write(buffer, offset, length - offset, position + offset);
    offset += bytesWritten;
  }
}

/**
 * A small file in one thread-pool round trip (`copyFile`), then fsynced when `sync`: a third of
 * the round trips of the chunked loop, which is what small-file copies are made of.
 */
async function copySmallFile(src: string, dst: string, sync: boolean): Promise<void> {
  try {
    // `dst` is replaced, never truncated (see copyLocalFile): refuse an existing one and unlink it
    // only then, which saves a round trip in the usual case where there is none.
    await copyFile(src, dst, constants.COPYFILE_EXCL).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
      await unlink(dst);
      await copyFile(src, dst, constants.COPYFILE_EXCL);
    });
  } catch (err) {
    // copyFile's error may be about either file.
    throw fromFsError(err, `${src} -> ${dst}`);
  }
  if (!sync) return;
  const handle = await open(dst, 'r').catch((err) => {
    throw fromFsError(err, dst);
  });
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function canceled(signal: AbortSignal): FerryError {
  return new FerryError('E_CANCELED', 'canceled', { cause: signal.reason });
}
