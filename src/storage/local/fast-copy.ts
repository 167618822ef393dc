import { copyFile, type FileHandle, open, unlink } from 'node:fs/promises';
import { FerryError, fromFsError } from '../../errors.ts';

const DEFAULT_CHUNK = 4 * 1024 * 1024;
/** Files up to this size are copied in one step: too small to be worth interrupting. */
const SMALL_FILE = 256 * 1024;

export interface CopyLocalOptions {
  signal?: AbortSignal;
  /** Called with the number of bytes written since the previous call. */
  onProgress?: (bytes: number) => void;
  /** Bytes per read/write (two buffers of this size are used). Default 4 MiB. */
  chunkSize?: number;
  /** The source's size when the caller knows it (saves a stat). A stale hint is harmless. */
  sizeHint?: number;
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
 * fsynced before the promise resolves. The caller writes to a temporary name, renames it into
 * place and removes it on failure (a failed or canceled copy leaves `dst` partial).
 *
 * Throws `E_CANCELED` when `signal` aborts, `E_NOT_FOUND`/`E_IS_A_DIRECTORY`/`E_NO_SPACE`…
 * (via `fromFsError`) for file-system errors.
 */
export async function copyLocalFile(src: string, dst: string, options: CopyLocalOptions = {}): Promise<void> {
  if (options.signal?.aborted) throw canceled(options.signal);
  await unlink(dst).catch(() => undefined);
  if (options.sizeHint !== undefined && options.sizeHint <= SMALL_FILE) {
    await copySmallFile(src, dst);
    options.onProgress?.(options.sizeHint);
    return;
  }
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
      await output.sync();
    } finally {
      await output.close();
    }
  } catch (err) {
    throw err instanceof FerryError ? err : fromFsError(err, dst);
  } finally {
    await input.close();
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
 * A small file in one thread-pool round trip (`copyFile`), then fsynced: a third of the round
 * trips of the chunked loop, which is what small-file copies are made of.
 */
async function copySmallFile(src: string, dst: string): Promise<void> {
  try {
    await copyFile(src, dst);
  } catch (err) {
    // copyFile's error may be about either file.
    throw fromFsError(err, `${src} -> ${dst}`);
  }
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
