import { createWriteStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.ts';
import { spoolPath } from '../tasks/definitions/upload.ts';

/**
 * Stream an upload's body into the spool under the task id it will have, and fsync it: an
 * accepted upload survives a crash. Returns the byte count; a body that ends early is
 * `E_BAD_REQUEST` and leaves nothing behind.
 */
export async function spoolUpload(stagingDir: string, id: string, source: Readable): Promise<number> {
  const path = spoolPath(stagingDir, id);
  await mkdir(dirname(path), { recursive: true });
  let size = 0;
  try {
    source.on('data', (chunk: Buffer) => {
      size += chunk.length;
    });
    await pipeline(source, createWriteStream(path, { highWaterMark: 1 << 20 }));
    // fsync through a second descriptor: it flushes the file, whichever descriptor wrote it.
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await rm(path, { force: true });
    throw new FerryError('E_BAD_REQUEST', 'upload body ended early', { cause: err });
  }
  return size;
}

/** Drop a spooled body no task took. */
export async function dropSpooled(stagingDir: string, id: string): Promise<void> {
  await rm(spoolPath(stagingDir, id), { force: true });
}
