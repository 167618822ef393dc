import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { S3Driver, s3Settings } from '../../src/storage/s3/s3-driver.ts';
import { type S3Server, s3Addition, startS3Server } from '../helpers/s3-server.ts';
import { codeOf, runDriverConformance } from './driver-conformance.ts';

let server: S3Server;
before(async () => {
  server = await startS3Server();
});
after(() => server.close());

const settings = (extra: Record<string, unknown> = {}) => s3Settings({ ...s3Addition(server), ...extra });

// Each suite under its own prefix of the one bucket: a fresh, empty storage.
runDriverConformance('S3', async () => ({
  driver: await S3Driver.open(settings({ root_folder_path: `/suite-${randomBytes(4).toString('hex')}` })),
  cleanup: async () => undefined,
}));

describe('S3 driver', () => {
  // s3rver accepts any signature, so wrong credentials cannot be shown against it; a missing
  // bucket takes the same path (HeadBucket at mount time fails).
  it('refuses a missing bucket at mount time with a clear error, and incomplete settings', async () => {
    await assert.rejects(
      S3Driver.open(settings({ bucket: 'no-such-bucket' })),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'E_STORAGE_CONFIG');
        assert.match(err.message, /cannot use bucket no-such-bucket/);
        return true;
      },
    );
    assert.throws(() => s3Settings({ bucket: 'b' }), { code: 'E_STORAGE_CONFIG' });
  });

  it('keeps a mount inside its root prefix', async () => {
    const inner = await S3Driver.open(settings({ root_folder_path: '/jail' }));
    assert.equal(await codeOf(inner.stat('/../outside')), 'E_PATH_OUTSIDE_ROOT');
    await inner.close();
  });

  it('removeFiles deletes many files in batches, leaves the rest, and takes a missing one as done', async () => {
    const d = await S3Driver.open(settings({ root_folder_path: `/many-${randomBytes(4).toString('hex')}` }));
    const put = (path: string) => d.write(path, Readable.from([Buffer.from(path)]), { size: path.length });
    // More than one DeleteObjects request holds (1,000 keys).
    const doomed = Array.from({ length: 1203 }, (_, i) => `/f/${i}.txt`);
    for (let i = 0; i < doomed.length; i += 50) await Promise.all(doomed.slice(i, i + 50).map(put));
    await put('/f/keep.txt');
    await put('/f/sub/keep.txt');
    const failed = await d.removeFiles([...doomed, '/f/never-there.txt']);
    assert.deepEqual([...failed], []);
    assert.deepEqual(
      (await d.list('/f')).map((e) => e.name),
      ['keep.txt', 'sub'],
    );
    assert.equal((await d.stat('/f/sub/keep.txt'))?.size, '/f/sub/keep.txt'.length);
    await d.close();
  });

  describe('writeRanges: a multipart upload streamed from ranges of the source', () => {
    const data = randomBytes(12 * 1024 * 1024 + 123); // three parts, the last one short
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const ranges = (source: Buffer) => async (start: number, into: Buffer) => {
      source.copy(into, 0, start, start + into.length);
    };
    const readAll = async (d: S3Driver, path: string) => {
      const chunks: Buffer[] = [];
      for await (const c of await d.read(path)) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };

    it('puts the object whole, reporting every byte, and refuses an existing one without overwrite', async () => {
      const d = await S3Driver.open(
        settings({ root_folder_path: `/ranges-${randomBytes(4).toString('hex')}` }),
      );
      let reported = 0;
      await d.writeRanges('/a/big.bin', data.length, ranges(data), { onProgress: (n) => (reported += n) });
      assert.equal(sha(await readAll(d, '/a/big.bin')), sha(data));
      assert.equal(reported, data.length);
      assert.equal(await codeOf(d.writeRanges('/a/big.bin', data.length, ranges(data))), 'E_EXISTS');
      await d.close();
    });

    it('a part that keeps failing leaves no object; a cancel is E_CANCELED and leaves none', async () => {
      const d = await S3Driver.open(
        settings({ root_folder_path: `/ranges-${randomBytes(4).toString('hex')}` }),
      );
      let reads = 0;
      const broken = async (start: number, into: Buffer) => {
        reads++;
        if (start > 0) throw new Error('source went away');
        await ranges(data)(start, into);
      };
      assert.equal(await codeOf(d.writeRanges('/broken.bin', data.length, broken)), 'E_BACKEND');
      assert.ok(reads >= 4, `a failing read is tried again (${reads} reads)`);
      assert.equal(await d.stat('/broken.bin'), null);

      const controller = new AbortController();
      const slow = async (start: number, into: Buffer) => {
        if (start > 0) controller.abort();
        await ranges(data)(start, into);
      };
      const canceled = d.writeRanges('/canceled.bin', data.length, slow, { signal: controller.signal });
      assert.equal(await codeOf(canceled), 'E_CANCELED');
      assert.equal(await d.stat('/canceled.bin'), null);
      await d.close();
    });
  });
});
