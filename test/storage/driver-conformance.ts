import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Driver } from '../../src/storage/driver.ts';
import { TEMP_PREFIX, tempPathFor } from '../../src/storage/paths.ts';
import { TaskStopped } from '../../src/tasks/abort-reason.ts';
import { runStorageLayerConformance } from './storage-layer-conformance.ts';
import { bytes, codeOf, readAll, slowSource } from './stream-helpers.ts';

export { bytes, codeOf, readAll, slowSource } from './stream-helpers.ts';

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function streamSha256(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Paths that try to climb out of the root, whatever the driver. */
const TRAVERSALS = ['/../x', '/a/../../x', '..', '../../etc/passwd', '/a/b/../../../x'];

/**
 * The behaviour every storage driver must show. Each backend's test file calls this with a
 * factory for a fresh, empty driver; the suite is the `Driver` contract in executable form.
 * Each case works in its own folder, so the cases do not depend on one another's leftovers.
 */
export function runDriverConformance(
  name: string,
  makeDriver: () => Promise<{ driver: Driver; cleanup: () => Promise<void> }>,
): void {
  describe(`${name} driver conformance`, () => {
    let driver: Driver;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ driver, cleanup } = await makeDriver());
    });
    after(async () => {
      await driver.close();
      await cleanup();
    });

    it('writes and reads back files byte for byte: 20 MB, small and empty', async () => {
      const big = randomBytes(20 * 1024 * 1024 + 17);
      let reported = 0;
      await driver.write('/rt/big.bin', bytes(big.subarray(0, 7e6), big.subarray(7e6)), {
        size: big.length,
        onProgress: (n) => {
          reported += n;
        },
      });
      assert.equal(reported, big.length, 'progress adds up to the size');
      assert.equal(await streamSha256(await driver.read('/rt/big.bin')), sha256(big));
      assert.equal((await driver.stat('/rt/big.bin'))?.size, big.length);

      await driver.write('/rt/small.txt', bytes('hello, ferry'));
      assert.equal((await readAll(await driver.read('/rt/small.txt'))).toString(), 'hello, ferry');

      await driver.write('/rt/empty', Readable.from([]));
      const empty = await driver.stat('/rt/empty');
      assert.deepEqual([empty?.size, empty?.isDir], [0, false]);
      assert.equal((await readAll(await driver.read('/rt/empty'))).length, 0);
    });

    it('creates parent folders on write', async () => {
      await driver.write('/deep/a/b/c/file.txt', bytes('x'));
      assert.equal((await driver.stat('/deep/a/b'))?.isDir, true);
      assert.equal((await driver.stat('/deep/a/b/c/file.txt'))?.size, 1);
    });

    it('reads byte ranges: start and end inclusive, either one alone', async () => {
      await driver.write('/range/f.txt', bytes('0123456789'));
      const range = async (start?: number, end?: number) =>
        (await readAll(await driver.read('/range/f.txt', { start, end }))).toString();
      assert.equal(await range(2, 5), '2345');
      assert.equal(await range(7), '789');
      assert.equal(await range(undefined, 2), '012');
      assert.equal(await range(4, 4), '4');
      assert.equal(await range(8, 100), '89');
    });

    it('stats and lists names, sizes, folder flags and times', async () => {
      await driver.write('/ls/a.txt', bytes('abc'));
      await driver.write('/ls/b.bin', bytes(randomBytes(1000)));
      await driver.mkdir('/ls/sub');
      const entries = await driver.list('/ls');
      assert.deepEqual(entries.map((e) => [e.name, e.path, e.isDir, e.size]).sort(), [
        ['a.txt', '/ls/a.txt', false, 3],
        ['b.bin', '/ls/b.bin', false, 1000],
        ['sub', '/ls/sub', true, 0],
      ]);
      // Object stores have no times for folders (no object behind them): files only.
      for (const e of entries) {
        assert.ok(Number.isFinite(e.modified) && (e.isDir ? e.modified >= 0 : e.modified > 0), e.name);
      }
      const a = await driver.stat('/ls/a.txt');
      assert.deepEqual([a?.name, a?.path, a?.isDir, a?.size], ['a.txt', '/ls/a.txt', false, 3]);
      assert.equal((await driver.stat('/ls/sub'))?.isDir, true);
      assert.equal((await driver.stat('/'))?.isDir, true);
      assert.deepEqual(await driver.list('/ls/sub'), []);
    });

    it('reports what is missing: stat null, list/read/rename E_NOT_FOUND', async () => {
      assert.equal(await driver.stat('/missing/nope'), null);
      assert.equal(await driver.stat('/missing'), null);
      assert.equal(await codeOf(driver.list('/missing')), 'E_NOT_FOUND');
      assert.equal(await codeOf(driver.read('/missing/nope')), 'E_NOT_FOUND');
      assert.equal(await codeOf(driver.rename('/missing/a', '/missing/b')), 'E_NOT_FOUND');
      await driver.write('/kinds/file.txt', bytes('x'));
      assert.equal(await codeOf(driver.list('/kinds/file.txt')), 'E_NOT_A_DIRECTORY');
      assert.equal(await codeOf(driver.read('/kinds')), 'E_IS_A_DIRECTORY');
    });

    it('hides a write in progress: neither its final nor its temporary name is listed', async () => {
      await driver.mkdir('/busy');
      const source = new PassThrough();
      let written = 0;
      let wake = () => {};
      const progressed = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const writing = driver.write('/busy/f.bin', source, {
        onProgress: (n) => {
          written += n;
          wake();
        },
      });
      source.write(randomBytes(256 * 1024));
      // Drivers that buffer before sending may report nothing yet: a short wait does as well.
      await Promise.race([progressed, new Promise((r) => setTimeout(r, 200))]);
      assert.deepEqual(await driver.list('/busy'), []);
      assert.equal(await driver.stat('/busy/f.bin'), null);
      source.end(randomBytes(1000));
      await writing;
      assert.equal(written, 256 * 1024 + 1000);
      assert.deepEqual(
        (await driver.list('/busy')).map((e) => e.name),
        ['f.bin'],
      );
    });

    it('reports free space as a positive number, or null when the backend cannot tell', async () => {
      const free = await driver.freeSpace('/');
      assert.ok(free === null || (Number.isFinite(free) && free > 0), `free space ${free}`);
    });

    it('mkdir creates parents and is idempotent', async () => {
      await driver.mkdir('/mk/a/b/c');
      await driver.mkdir('/mk/a/b/c');
      await driver.mkdir('/mk/a');
      assert.equal((await driver.stat('/mk/a/b/c'))?.isDir, true);
    });

    it('refuses to replace an existing file unless overwrite is set', async () => {
      await driver.write('/ow/f.txt', bytes('one'));
      assert.equal(await codeOf(driver.write('/ow/f.txt', bytes('two'))), 'E_EXISTS');
      assert.equal((await readAll(await driver.read('/ow/f.txt'))).toString(), 'one');
      await driver.write('/ow/f.txt', bytes('three'), { overwrite: true });
      assert.equal((await readAll(await driver.read('/ow/f.txt'))).toString(), 'three');
      assert.equal(await codeOf(driver.write('/ow', bytes('x'))), 'E_EXISTS');
    });

    it('renames files with and without overwrite', async () => {
      await driver.write('/mv/a', bytes('a'));
      await driver.write('/mv/b', bytes('bb'));
      assert.equal(await codeOf(driver.rename('/mv/a', '/mv/b')), 'E_EXISTS');
      assert.equal((await readAll(await driver.read('/mv/b'))).toString(), 'bb');
      await driver.rename('/mv/a', '/mv/c');
      assert.equal(await driver.stat('/mv/a'), null);
      await driver.rename('/mv/c', '/mv/b', { overwrite: true });
      assert.equal((await readAll(await driver.read('/mv/b'))).toString(), 'a');
      assert.equal(await driver.stat('/mv/c'), null);
    });

    it('renames folders with their contents, refusing an existing one without overwrite', async () => {
      await driver.write('/mvd/src/x/y.txt', bytes('y'));
      await driver.mkdir('/mvd/taken');
      assert.equal(await codeOf(driver.rename('/mvd/src', '/mvd/taken')), 'E_EXISTS');
      await driver.rename('/mvd/src', '/mvd/dst');
      assert.equal(await driver.stat('/mvd/src'), null);
      assert.equal((await readAll(await driver.read('/mvd/dst/x/y.txt'))).toString(), 'y');
    });

    it('copies a file on the backend when it says it can', async (t) => {
      if (!driver.capabilities.serverSideCopy) return t.skip('no server-side copy');
      const data = randomBytes(3 * 1024 * 1024 + 5);
      await driver.write('/cp/src.bin', bytes(data));
      await driver.copy('/cp/src.bin', '/cp/sub/dst.bin');
      assert.equal(await streamSha256(await driver.read('/cp/sub/dst.bin')), sha256(data));
      assert.equal(await streamSha256(await driver.read('/cp/src.bin')), sha256(data), 'source kept');
      await driver.write('/cp/other', bytes('other'));
      assert.equal(await codeOf(driver.copy('/cp/src.bin', '/cp/other')), 'E_EXISTS');
      assert.equal((await readAll(await driver.read('/cp/other'))).toString(), 'other');
      await driver.copy('/cp/src.bin', '/cp/other', { overwrite: true });
      assert.equal((await driver.stat('/cp/other'))?.size, data.length);
      assert.equal(await codeOf(driver.copy('/cp/missing', '/cp/x')), 'E_NOT_FOUND');
      assert.deepEqual(
        (await driver.list('/cp')).map((e) => e.name),
        ['other', 'src.bin', 'sub'],
      );
    });

    it('removes files and whole trees; removing nothing is fine', async () => {
      await driver.write('/rm/a/b/c.txt', bytes('x'));
      await driver.write('/rm/a/d.txt', bytes('x'));
      await driver.write('/rm/keep.txt', bytes('x'));
      await driver.remove('/rm/a');
      assert.equal(await driver.stat('/rm/a'), null);
      assert.equal(await driver.stat('/rm/a/b/c.txt'), null);
      assert.deepEqual(
        (await driver.list('/rm')).map((e) => e.name),
        ['keep.txt'],
      );
      await driver.remove('/rm/a');
      await driver.remove('/rm');
      assert.equal(await driver.stat('/rm'), null);
      assert.equal(await driver.stat('/rm/keep.txt'), null);
      await driver.remove('/rm/never/was');
    });

    it('leaves nothing under the final name, and no temp files, when a write is aborted', async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const started = Date.now();
      const code = await codeOf(driver.write('/abort/f.bin', slowSource(300), { signal: controller.signal }));
      assert.equal(code, 'E_CANCELED');
      assert.ok(Date.now() - started < 1500, 'the abort stopped the write');
      assert.equal(await driver.stat('/abort/f.bin'), null);
      assert.deepEqual(await driver.list('/abort').catch(() => []), []);
    });

    it('keeps the old file when an overwrite is aborted or its source fails', async () => {
      await driver.write('/keep/f.txt', bytes('precious'));
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const aborted = driver.write('/keep/f.txt', slowSource(300), {
        overwrite: true,
        signal: controller.signal,
      });
      assert.equal(await codeOf(aborted), 'E_CANCELED');
      await assert.rejects(driver.write('/keep/f.txt', slowSource(300, 5), { overwrite: true }));
      await assert.rejects(driver.write('/keep/g.txt', slowSource(300, 5)));
      assert.equal((await readAll(await driver.read('/keep/f.txt'))).toString(), 'precious');
      assert.deepEqual(
        (await driver.list('/keep')).map((e) => e.name),
        ['f.txt'],
      );
    });

    it('places nothing, and leaves no temp file, when beforePlace throws; places when it passes', async () => {
      // A small body (one request on S3), a large one of unknown size (multipart through a
      // stream), and ranges when the driver writes them: each checks right before placing.
      const small = randomBytes(1000);
      const large = randomBytes(6 * 1024 * 1024 + 3);
      const ways: [string, (path: string, options: Parameters<Driver['write']>[2]) => Promise<void>][] = [
        ['small', (path, o) => driver.write(path, bytes(small), { ...o, size: small.length })],
        ['large', (path, o) => driver.write(path, bytes(large.subarray(0, 3e6), large.subarray(3e6)), o)],
      ];
      const { writeRanges } = driver;
      if (writeRanges) {
        const readInto = async (start: number, into: Buffer) => {
          large.copy(into, 0, start, start + into.length);
        };
        ways.push(['ranges', (path, o) => writeRanges.call(driver, path, large.length, readInto, o)]);
      }
      await driver.write('/fence/old', bytes('precious'));
      for (const [way, write] of ways) {
        for (const [path, overwrite] of [
          [`/fence/${way}`, false],
          ['/fence/old', true],
        ] as const) {
          const tempKey = `fence-${way}`;
          let written = 0;
          const refused = write(path, {
            tempKey,
            overwrite,
            onProgress: (n) => {
              written += n;
            },
            beforePlace: async () => {
              throw new TaskStopped('lease-lost');
            },
          });
          assert.equal(await codeOf(refused), 'E_CANCELED', `${way} → ${path}`);
          assert.equal(await driver.stat(tempPathFor(path, tempKey)), null, `no temp of ${way} → ${path}`);
          if (overwrite) {
            assert.equal((await readAll(await driver.read(path))).toString(), 'precious', way);
          } else {
            assert.equal(await driver.stat(path), null, `nothing placed by ${way}`);
          }
          assert.ok(written <= large.length, way);
        }
      }
      assert.deepEqual(
        (await driver.list('/fence')).map((e) => e.name),
        ['old'],
      );
      for (const [way, write] of ways) {
        let written = 0;
        let writtenWhenAsked = -1;
        await write(`/fence/${way}`, {
          tempKey: `fence-${way}`,
          onProgress: (n) => {
            written += n;
          },
          beforePlace: async () => {
            writtenWhenAsked = written;
            assert.equal(await driver.stat(`/fence/${way}`), null, `${way}: not placed before the check`);
          },
        });
        const expected = way === 'small' ? small : large;
        assert.ok(writtenWhenAsked >= 0, `${way}: beforePlace was called`);
        assert.ok((await readAll(await driver.read(`/fence/${way}`))).equals(expected), way);
      }
    });

    it('a write keyed like an interrupted one replaces its leftover temp file with a new one', async (t) => {
      // An object store writes no temp file (a multipart upload is invisible until complete).
      if (driver.name === 'S3') return t.skip('no temp files');
      // The leftover may still be open in a paused attempt of the same task: a new file, not the
      // old one truncated, so that attempt's late writes land in nothing that gets placed.
      const temp = tempPathFor('/leftover/f', 'key');
      await driver.write(temp, bytes('stale bytes of an attempt that stopped'));
      await driver.write('/leftover/f', bytes('fresh'), { tempKey: 'key' });
      assert.equal((await readAll(await driver.read('/leftover/f'))).toString(), 'fresh');
      assert.equal(await driver.stat(temp), null);
    });

    it('refuses every path that climbs out of the root, whatever the method', async () => {
      await driver.write('/trav/f.txt', bytes('x'));
      for (const p of TRAVERSALS) {
        const calls: [string, () => Promise<unknown>][] = [
          ['stat', () => driver.stat(p)],
          ['list', () => driver.list(p)],
          ['read', () => driver.read(p)],
          ['write', () => driver.write(p, bytes('x'))],
          ['mkdir', () => driver.mkdir(p)],
          ['remove', () => driver.remove(p)],
          ['rename from', () => driver.rename(p, '/trav/g.txt')],
          ['rename to', () => driver.rename('/trav/f.txt', p)],
        ];
        if (driver.capabilities.serverSideCopy) {
          calls.push(
            ['copy from', () => driver.copy(p, '/trav/g.txt')],
            ['copy to', () => driver.copy('/trav/f.txt', p)],
          );
        }
        for (const [method, call] of calls)
          assert.equal(await codeOf(call()), 'E_PATH_OUTSIDE_ROOT', `${method} ${p}`);
      }
      assert.deepEqual(
        (await driver.list('/trav')).map((e) => e.name),
        ['f.txt'],
      );
      assert.equal(await driver.stat('/x'), null);
    });

    it('takes percent-encoded and odd names literally: nothing is decoded twice', async () => {
      const names = ['%2e%2e', '..%2f..%2fx', '%2E%2E%2Fetc', '...', 'a..b', ' spaced name '];
      for (const name of names) {
        await driver.write(`/odd/${name}`, bytes(name));
        assert.equal((await readAll(await driver.read(`/odd/${name}`))).toString(), name);
      }
      assert.deepEqual((await driver.list('/odd')).map((e) => e.name).sort(), names.sort());
    });

    it('hides names that start with the temp prefix', async () => {
      // Written through the driver, such a name is one of ferry's unfinished writes as far as
      // listings go: the engine never lets users pick it.
      await driver.write(`/tmpname/${TEMP_PREFIX}x`, bytes('x'));
      await driver.write('/tmpname/visible', bytes('x'));
      assert.deepEqual(
        (await driver.list('/tmpname')).map((e) => e.name),
        ['visible'],
      );
    });

    runStorageLayerConformance(name, () => driver);
  });
}
