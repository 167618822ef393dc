import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/** The `code` of the error a promise rejects with, or undefined when it resolves. */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

/** A stream of `data` (in one chunk per buffer), for write() calls. */
export function bytes(...data: (Buffer | string)[]): Readable {
  return Readable.from(data.map((d) => (typeof d === 'string' ? Buffer.from(d) : d)));
}

/** All of a stream's bytes. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A source that yields 64 KiB every 10 ms, for `chunks` chunks (so ~6 MB/s), and can be made to
 * fail after `failAfter` chunks: long enough for an abort to land in the middle.
 */
export function slowSource(chunks: number, failAfter?: number): Readable {
  let i = 0;
  return new Readable({
    read() {
      const n = i++;
      setTimeout(() => {
        if (n === failAfter) this.destroy(new Error('source broke'));
        else this.push(n >= chunks ? null : randomBytes(64 * 1024));
      }, 10);
    },
  });
}
