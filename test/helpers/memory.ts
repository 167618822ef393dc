import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Driver } from '../../src/storage/driver.ts';

/**
 * How far the heap and buffers rose above where they stood while `work` ran (sampled every 20 ms).
 *
 * This counts garbage too: V8 frees a Buffer's memory only when it collects the Buffer, and it
 * starts a collection for buffers once some 64 MB of them have been allocated since the last one.
 * So a stream that holds one chunk at a time can still show growth near that much, and more on a
 * busy machine; a stream that holds its data grows by at least the data's size.
 */
export async function peakGrowth(work: () => Promise<void>): Promise<number> {
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const baseline = used();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, used());
  }, 20);
  try {
    await work();
    peak = Math.max(peak, used());
  } finally {
    clearInterval(timer);
  }
  return peak - baseline;
}

/**
 * Write `mib` MiB to `path` on `driver` and read it back, and assert that memory stayed flat: it
 * rose by less than half the data (the garbage allowance of `peakGrowth`), which a driver holding
 * the file in memory on either way cannot do.
 */
export async function assertFlatRoundTrip(driver: Driver, path: string, mib: number): Promise<void> {
  const chunk = randomBytes(1 << 20);
  let read = 0;
  const growth = await peakGrowth(async () => {
    await driver.write(
      path,
      Readable.from(
        (function* () {
          for (let i = 0; i < mib; i++) yield chunk;
        })(),
      ),
    );
    for await (const part of await driver.read(path)) read += (part as Buffer).length;
  });
  if (read !== mib * chunk.length) throw new Error(`read ${read} bytes of ${mib * chunk.length}`);
  const limit = (mib * chunk.length) / 2;
  if (growth >= limit)
    throw new Error(
      `memory grew by ${Math.round(growth / 1e6)} MB moving ${mib} MiB (limit ${Math.round(limit / 1e6)} MB)`,
    );
}
