import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { TEMP_PREFIX } from '../../src/storage/paths.ts';
import { S3Driver, s3Settings } from '../../src/storage/s3/s3-driver.ts';
import { privileged, setImmutable } from '../helpers/privileged.ts';
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

  it('refuses an endpoint that never answers at mount time, within 15 s', async () => {
    // A server that takes connections and never answers (a hung proxy, a wrong port).
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const started = Date.now();
    try {
      const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      await assert.rejects(S3Driver.open(settings({ endpoint })), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'E_STORAGE_CONFIG');
        assert.match(err.message, /no answer within 15 s/);
        return true;
      });
      assert.ok(Date.now() - started < 20_000, `refused after ${Date.now() - started} ms`);
    } finally {
      silent.close();
      for (const socket of sockets) socket.destroy();
    }
  });

  it('keeps a mount inside its root prefix', async () => {
    const inner = await S3Driver.open(settings({ root_folder_path: '/jail' }));
    assert.equal(await codeOf(inner.stat('/../outside')), 'E_PATH_OUTSIDE_ROOT');
    await inner.close();
  });

  it('removeTree removes a folder of more keys than one listing or DeleteObjects holds', async () => {
    const d = await S3Driver.open(settings({ root_folder_path: `/many-${randomBytes(4).toString('hex')}` }));
    const put = (path: string) => d.write(path, Readable.from([Buffer.from(path)]), { size: path.length });
    // More than one page of keys (1,000 a listing and a DeleteObjects).
    const doomed = Array.from({ length: 1203 }, (_, i) => `/f/big/${i % 3}/${i}.txt`);
    for (let i = 0; i < doomed.length; i += 50) await Promise.all(doomed.slice(i, i + 50).map(put));
    await put('/f/keep.txt');
    await put('/f/bigger.txt'); // a key that starts like the folder's, outside it
    assert.deepEqual(await d.measure('/f/big'), {
      files: doomed.length,
      bytes: doomed.reduce((n, path) => n + path.length, 0),
    });
    const removed = new Set<string>();
    await d.removeTree('/f/big', {
      signal: new AbortController().signal,
      removed: (entry) => removed.add(entry.path),
      failed: (path, err) => assert.fail(`${path}: ${err.message}`),
    });
    assert.deepEqual([...removed].sort(), [...doomed].sort());
    assert.deepEqual(
      (await d.list('/f')).map((e) => e.name),
      ['bigger.txt', 'keep.txt'],
    );
    await d.close();
  });

  /** A mount of its own prefix, with a tree of nested folders, an empty one and hidden names. */
  const treeMount = async () => {
    const d = await S3Driver.open(settings({ root_folder_path: `/tree-${randomBytes(4).toString('hex')}` }));
    const put = (path: string, size: number) => d.write(path, Readable.from([randomBytes(size)]), { size });
    const files = ['/t/a.bin', '/t/b/c.bin', '/t/b/d/e.bin', '/t/b/d/f.bin', '/t/g/h.bin', '/keep/x.bin'];
    await Promise.all(files.map((path, i) => put(path, 1000 * (i + 1))));
    // One level only: s3rver lists no folder whose keys all lie two or more levels below it.
    await d.mkdir('/t/empty');
    await put(`/t/b/${TEMP_PREFIX}half-written`, 77);
    await put(`/t/${TEMP_PREFIX}folder/inside.bin`, 88);
    return d;
  };
  /** The files and bytes below `path`, walked listing by listing. */
  const walk = async (d: S3Driver, path: string): Promise<{ files: number; bytes: number }> => {
    let files = 0;
    let bytes = 0;
    for (const entry of await d.list(path)) {
      const inner = entry.isDir ? await walk(d, entry.path) : { files: 1, bytes: entry.size };
      files += inner.files;
      bytes += inner.bytes;
    }
    return { files, bytes };
  };

  it('measures a tree from one flat listing as a walk of its listings counts it', async () => {
    const d = await treeMount();
    for (const path of ['/', '/t', '/t/b', '/t/empty'])
      assert.deepEqual(await d.measure(path), await walk(d, path), path);
    assert.deepEqual(await d.measure('/t'), { files: 5, bytes: 15_000 });
    // Where there is nothing to measure, the same error as listing it.
    for (const path of ['/t/a.bin', '/missing']) {
      const code = await codeOf(d.list(path));
      assert.ok(code, `${path} cannot be listed`);
      assert.equal(await codeOf(d.measure(path)), code, path);
    }
    await d.close();
  });

  it('walks a tree from one flat listing as a walk of its listings meets it, folders first', async () => {
    const d = await treeMount();
    const listed = async (path: string, rel = ''): Promise<string[]> => {
      const out: string[] = [];
      for (const e of await d.list(path)) {
        out.push(`${rel}/${e.name} ${e.isDir ? 'dir' : e.size}`);
        if (e.isDir) out.push(...(await listed(e.path, `${rel}/${e.name}`)));
      }
      return out;
    };
    const signal = new AbortController().signal;
    for (const path of ['/', '/t', '/t/b', '/t/empty']) {
      const walked: string[] = [];
      const seen = new Set<string>();
      for await (const { entry, rel } of d.walk(path, signal)) {
        walked.push(`${rel} ${entry.isDir ? 'dir' : entry.size}`);
        const parent = rel.slice(0, rel.lastIndexOf('/'));
        assert.ok(parent === '' || seen.has(parent), `${rel} comes after its folder`);
        if (entry.isDir) seen.add(rel);
        assert.equal(entry.path, rel === '' ? path : `${path === '/' ? '' : path}${rel}`);
      }
      assert.deepEqual(walked.sort(), (await listed(path)).sort(), path);
    }
    // Where there is nothing to walk, the same error as listing it.
    for (const path of ['/t/a.bin', '/missing']) {
      const code = await codeOf(d.list(path));
      const walking = (async () => {
        for await (const _ of d.walk(path, signal));
      })();
      assert.equal(await codeOf(walking), code, path);
    }
    await d.close();
  });

  it('removeTree removes a folder with all its keys and reports each file once', async () => {
    const d = await treeMount();
    const removed: string[] = [];
    const failed: string[] = [];
    await d.removeTree('/t/b', {
      signal: new AbortController().signal,
      removed: (entry) => removed.push(`${entry.path}:${entry.size}`),
      failed: (path) => failed.push(path),
    });
    assert.deepEqual(removed.sort(), ['/t/b/c.bin:2000', '/t/b/d/e.bin:3000', '/t/b/d/f.bin:4000']);
    assert.deepEqual(failed, []);
    assert.equal(await d.stat('/t/b'), null, 'the folder is gone, hidden names and all');
    assert.deepEqual(
      (await d.list('/t')).map((e) => e.name),
      ['a.bin', 'empty', 'g'],
    );
    // A folder that holds only an empty folder (markers) goes too, reporting nothing.
    await d.removeTree('/t/empty', {
      signal: new AbortController().signal,
      removed: () => assert.fail(),
      failed: () => assert.fail(),
    });
    assert.equal(await d.stat('/t/empty'), null);

    const none = { signal: new AbortController().signal, removed: () => undefined, failed: () => undefined };
    assert.equal(await codeOf(d.removeTree('/missing', none)), 'E_NOT_FOUND');
    assert.equal(await codeOf(d.removeTree('/t/a.bin', none)), 'E_NOT_A_DIRECTORY');
    assert.equal(await codeOf(d.removeTree('/', none)), 'E_FORBIDDEN');
    const canceled = new AbortController();
    canceled.abort();
    await assert.rejects(d.removeTree('/t', { ...none, signal: canceled.signal }));
    assert.deepEqual(
      await d.measure('/t'),
      { files: 2, bytes: 6000 },
      'a canceled removeTree removed nothing',
    );
    assert.equal((await d.stat('/keep/x.bin'))?.size, 6000);
    await d.close();
  });

  it('removeTree reports every file it could not remove, and removes them when asked again', async (t) => {
    const d = await treeMount();
    // s3rver keeps /t/b/d's objects in one folder: made immutable, none of them can be unlinked,
    // and the DeleteObjects that holds them fails.
    const stuckFolder = join(
      server.directory,
      server.bucket,
      (d as unknown as { prefix: string }).prefix,
      't',
      'b',
      'd',
    );
    if (!privileged(t, await setImmutable(stuckFolder, true), 'chattr +i')) return;
    const removed: string[] = [];
    const failed = new Map<string, Error>();
    try {
      await d.removeTree('/t', {
        signal: new AbortController().signal,
        removed: (entry) => removed.push(entry.path),
        failed: (path, err) => failed.set(path, err),
      });
    } finally {
      await setImmutable(stuckFolder, false);
    }
    assert.ok(failed.has('/t/b/d/e.bin') && failed.has('/t/b/d/f.bin'), [...failed.keys()].join());
    assert.equal(removed.length + failed.size, 5, 'every file is reported once');
    for (const path of removed) assert.equal(await d.stat(path), null, `${path} was reported removed`);
    assert.equal((await d.stat('/t/b/d/e.bin'))?.size, 3000, 'the stuck file is still there');
    assert.equal((await d.stat('/t/b/d'))?.isDir, true, 'and so is its folder');

    const again: string[] = [];
    await d.removeTree('/t', {
      signal: new AbortController().signal,
      removed: (entry) => again.push(entry.path),
      failed: (path) => assert.fail(`${path} failed again`),
    });
    assert.ok(again.includes('/t/b/d/e.bin') && again.includes('/t/b/d/f.bin'), again.join());
    assert.equal(await d.stat('/t'), null);
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
