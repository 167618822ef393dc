import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChunkWriter } from '../../src/io/chunk-writer.ts';

const MiB = 1024 * 1024;

/** Chunks of uneven sizes (1 byte to 200 KiB), as a socket delivers them, that add up to `data`. */
function chunksOf(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = [1, 65_536, 7, 204_800, 16_384, 1000][i % 6] as number;
    chunks.push(Buffer.from(data.subarray(at, at + size)));
    at += size;
  }
  return chunks;
}

describe('ChunkWriter: the downloads’ writer (two 1 MiB buffers, positional writes)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-chunk-writer-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes every byte at its place across buffer boundaries, from a start offset, and after a seek', async () => {
    const path = join(dir, 'ranges.bin');
    const data = randomBytes(5 * MiB + 12_345);
    const file = await open(path, 'w');
    const written: number[] = [];
    const writer = new ChunkWriter(file, 0, (n) => written.push(n));
    try {
      // Two ranges written out of order, as the ranged fetch's workers do.
      const cut = 3 * MiB + 17;
      writer.seek(cut);
      for (const chunk of chunksOf(data.subarray(cut))) await writer.add(chunk);
      await writer.end();
      writer.seek(0);
      for (const chunk of chunksOf(data.subarray(0, cut))) await writer.add(chunk);
      await writer.end();
    } finally {
      await writer.settle();
      await file.close();
      writer.free();
    }
    assert.ok((await readFile(path)).equals(data), 'the file holds exactly the bytes added');
    assert.equal(
      written.reduce((a, b) => a + b, 0),
      data.length,
    );
    assert.ok(Math.max(...written) <= MiB, 'no write is larger than one buffer');
  });

  it('appends to a partial file at the offset it is given (a resumed download)', async () => {
    const path = join(dir, 'resume.bin');
    const data = randomBytes(2 * MiB + 5);
    const first = await open(path, 'w');
    await first.write(data, 0, 100_000, 0);
    await first.close();
    const file = await open(path, 'r+');
    const writer = new ChunkWriter(file, 100_000, () => {});
    for (const chunk of chunksOf(data.subarray(100_000))) await writer.add(chunk);
    await writer.end();
    await file.close();
    writer.free();
    assert.ok((await readFile(path)).equals(data));
  });

  it('reports a failed write at the next flush or at the end, and settles quietly', async () => {
    const path = join(dir, 'read-only.bin');
    await (await open(path, 'w')).close();
    const file = await open(path, 'r'); // every write fails with EBADF
    const writer = new ChunkWriter(file, 0, () => assert.fail('no write completes'));
    const add = async () => {
      for (const chunk of chunksOf(randomBytes(3 * MiB))) await writer.add(chunk);
      await writer.end();
    };
    await assert.rejects(add(), { code: 'EBADF' });
    await writer.settle();
    await file.close();
    writer.free();
  });

  it('once settled, starts no write: an add still running fails instead (a destroyed stream)', async () => {
    const path = join(dir, 'stopped.bin');
    const file = await open(path, 'w');
    const writer = new ChunkWriter(file, 0, () => {});
    // Five buffers' worth: the add waits for writes between them.
    const adding = writer.add(randomBytes(5 * MiB));
    await writer.settle();
    await assert.rejects(adding, /stopped/);
    await assert.rejects(writer.add(Buffer.from('late')), /stopped/);
    await file.close();
    writer.free();
    // At most the two buffers that had started to be written reached the file.
    assert.ok((await readFile(path)).length <= 2 * MiB);
  });
});
