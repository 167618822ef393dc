import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TextReader, Uint8ArrayReader, Uint8ArrayWriter, ZipWriter } from '@zip.js/zip.js';
import { ExtractionGuard } from '../../src/archive/index.ts';
import type { Driver, Endpoint } from '../../src/storage/driver.ts';
import { extractTo, listArchiveAt } from '../../src/storage/extraction.ts';
import { LocalDriver } from '../../src/storage/local/local-driver.ts';
import { TEMP_PREFIX, tempPathFor } from '../../src/storage/paths.ts';
import { fetchRangesInto, rangeReaderOf } from '../../src/storage/ranged-fetch.ts';
import { StagedTree } from '../../src/storage/staged-tree.ts';
import { copyBetween, linkInto, moveInto, removeTemp } from '../../src/storage/transfer.ts';
import { TaskStopped } from '../../src/tasks/abort-reason.ts';
import { bytes, codeOf, readAll, slowSource } from './stream-helpers.ts';

const LIMITS = { maxTotalBytes: 1 << 30, maxEntries: 10_000, maxRatio: 1000, ratioGraceBytes: 1 << 20 };

/** The names in a folder, temp names included only when the driver shows them (none should). */
async function names(driver: Driver, path: string): Promise<string[]> {
  return (await driver.list(path)).map((e) => e.name).sort();
}

/**
 * The storage layer's operations (`copyBetween`, ranged reads, link/rename placing, staged small
 * files, extraction) over one driver, against a Local driver as the other end: whatever the
 * driver, the bytes arrive whole, under their name only when complete, and the fast paths of two
 * local ends give the same results as the general ones.
 */
export function runStorageLayerConformance(name: string, driverOf: () => Driver): void {
  describe(`${name}: storage layer over the driver`, () => {
    let driver: Driver;
    let local: LocalDriver;
    let localRoot: string;
    const signal = new AbortController().signal;
    const at = (d: Driver, path: string): Endpoint => ({ driver: d, path });
    const options = (extra: Partial<Parameters<typeof copyBetween>[3]> = {}) => {
      let counted = 0;
      return {
        signal,
        overwrite: false,
        tempKey: 'conformance',
        sync: false,
        onProgress: (n: number) => {
          counted += n;
        },
        counted: () => counted,
        ...extra,
      };
    };
    before(async () => {
      driver = driverOf();
      localRoot = await mkdtemp(join(tmpdir(), 'ferry-layer-'));
      local = await LocalDriver.open(localRoot);
    });
    after(async () => {
      await rm(localRoot, { recursive: true, force: true });
    });

    it('copyBetween copies to and from the driver and within it, byte for byte, counting every byte', async () => {
      // Sizes: empty, one small-file-thread copy, a stream, one that goes by ranges to S3. The
      // caller makes the destination folder (as a copy task does).
      await driver.mkdir('/cb');
      for (const size of [0, 1000, 300 * 1024, 6 * 1024 * 1024]) {
        const data = randomBytes(size);
        await local.write(`/cb/src-${size}`, bytes(data));
        const up = options();
        await copyBetween(at(local, `/cb/src-${size}`), at(driver, `/cb/up-${size}`), size, up);
        assert.equal(up.counted(), size, `progress of ${size} up`);
        assert.ok((await readAll(await driver.read(`/cb/up-${size}`))).equals(data), `up ${size}`);
        const down = options();
        await copyBetween(at(driver, `/cb/up-${size}`), at(local, `/cb/down-${size}`), size, down);
        assert.equal(down.counted(), size, `progress of ${size} down`);
        assert.ok((await readAll(await local.read(`/cb/down-${size}`))).equals(data), `down ${size}`);
        await copyBetween(at(driver, `/cb/up-${size}`), at(driver, `/cb/within-${size}`), size, options());
        assert.ok((await readAll(await driver.read(`/cb/within-${size}`))).equals(data), `within ${size}`);
      }
    });

    it('copyBetween refuses a taken name without overwrite and replaces it with', async () => {
      await driver.write('/cbx/taken', bytes('old'));
      await local.write('/cbx/new', bytes('new!'));
      await local.mkdir('/cba');
      const code = await codeOf(copyBetween(at(local, '/cbx/new'), at(driver, '/cbx/taken'), 4, options()));
      assert.equal(code, 'E_EXISTS');
      assert.equal((await readAll(await driver.read('/cbx/taken'))).toString(), 'old');
      await copyBetween(at(local, '/cbx/new'), at(driver, '/cbx/taken'), 4, options({ overwrite: true }));
      assert.equal((await readAll(await driver.read('/cbx/taken'))).toString(), 'new!');
      assert.deepEqual(await names(driver, '/cbx'), ['taken']);
    });

    it('copyBetween aborted leaves nothing under the final name, and no temp name in a listing', async () => {
      await driver.write('/cba/slow', slowSource(40));
      const controller = new AbortController();
      const copying = copyBetween(
        at(driver, '/cba/slow'),
        at(local, '/cba/out'),
        40 * 64 * 1024,
        options({ signal: controller.signal }),
      );
      setTimeout(() => controller.abort(), 5);
      const code = await codeOf(copying);
      // Either the abort landed mid-copy, or the copy was quicker: never a partial file.
      if (code === undefined) assert.equal((await local.stat('/cba/out'))?.size, 40 * 64 * 1024);
      else assert.equal(await local.stat('/cba/out'), null);
      assert.ok((await names(local, '/cba').catch(() => [])).every((n) => !n.startsWith(TEMP_PREFIX)));
      await removeTemp(at(local, '/cba/out'), 'conformance');
    });

    it('every way of copying, linking, moving and staging checks beforePlace and places nothing when it throws', async () => {
      const refuse = async () => {
        throw new TaskStopped('lease-lost');
      };
      let asked = 0;
      const allow = async () => {
        asked++;
      };
      await driver.mkdir('/bp');
      await local.mkdir('/bp');
      // Sizes: a small-file-thread copy between local ends, a stream, ranges (S3 parts, or
      // parallel ranges into a local file).
      for (const size of [1000, 300 * 1024, 6 * 1024 * 1024]) {
        const data = randomBytes(size);
        await local.write(`/bp/src-${size}`, bytes(data));
        await driver.write(`/bp/src-${size}`, bytes(data));
        const pairs: [string, Endpoint, Endpoint][] = [
          ['up', at(local, `/bp/src-${size}`), at(driver, `/bp/up-${size}`)],
          ['down', at(driver, `/bp/src-${size}`), at(local, `/bp/down-${size}`)],
          ['within', at(driver, `/bp/src-${size}`), at(driver, `/bp/within-${size}`)],
        ];
        for (const [way, src, dst] of pairs) {
          const code = await codeOf(copyBetween(src, dst, size, options({ beforePlace: refuse })));
          assert.equal(code, 'E_CANCELED', `${way} ${size}`);
          assert.equal(await dst.driver.stat(dst.path), null, `nothing placed ${way} ${size}`);
          assert.equal(
            await dst.driver.stat(tempPathFor(dst.path, 'conformance')),
            null,
            `no temp ${way} ${size}`,
          );
          const before = asked;
          await copyBetween(src, dst, size, options({ beforePlace: allow }));
          assert.ok(asked > before, `${way} ${size}: asked`);
          assert.ok((await readAll(await dst.driver.read(dst.path))).equals(data), `${way} ${size}`);
        }
      }
      assert.deepEqual(
        (await names(local, '/bp')).filter((n) => n.startsWith(TEMP_PREFIX)),
        [],
      );

      await local.write('/bp/spool', bytes('spooled'));
      const linking = linkInto(at(local, '/bp/spool'), at(driver, '/bp/linked'), {
        overwrite: true,
        tempKey: 'conformance',
        beforePlace: refuse,
      });
      if (driver.localPath('/') !== null) assert.equal(await codeOf(linking), 'E_CANCELED');
      else assert.equal(await linking, false);
      assert.equal(await driver.stat('/bp/linked'), null);
      const moving = moveInto(at(local, '/bp/spool'), at(driver, '/bp/moved'), {
        keepSource: false,
        tempKey: 'conformance',
        beforePlace: refuse,
      });
      if (driver.localPath('/') !== null) assert.equal(await codeOf(moving), 'E_CANCELED');
      else assert.equal(await moving, false);
      assert.equal(await driver.stat('/bp/moved'), null);
      assert.equal((await readAll(await local.read('/bp/spool'))).toString(), 'spooled', 'source kept');

      // Staged small files: the batch is checked before it is put in place.
      await local.write('/bp-st/a', bytes('a'));
      await driver.mkdir('/bp-st-out');
      const tree = StagedTree.open(at(local, '/bp-st'), at(driver, '/bp-st-out'), {
        signal,
        sync: false,
        tempKey: 'conformance',
        beforePlace: refuse,
      });
      if (tree) {
        await tree.add({
          rel: '/a',
          size: 1,
          overwrite: false,
          placed: () => assert.fail('placed'),
          failed: (err) => assert.fail(String(err)),
          done: async () => assert.fail('done'),
        });
        assert.equal(await codeOf(tree.finish()), 'E_CANCELED');
        await tree.abandon();
        assert.deepEqual(await names(driver, '/bp-st-out'), []);
        assert.equal(await driver.stat(tempPathFor('/bp-st-out/a', 'conformance')), null);
      }
    });

    it('reads exact ranges for writeRanges, and fails a range past the end', async (t) => {
      if (!driver.capabilities.rangeRead) return t.skip('no range reads');
      const data = randomBytes(100_000);
      await driver.write('/rr/f', bytes(data));
      const read = rangeReaderOf(at(driver, '/rr/f'));
      const into = Buffer.alloc(1000);
      await read(5000, into);
      assert.ok(into.equals(data.subarray(5000, 6000)));
      assert.ok(await codeOf(read(99_500, Buffer.alloc(1000))));
    });

    it('fetches a file as parallel ranges into a local file', async (t) => {
      if (!driver.capabilities.rangeRead) return t.skip('no range reads');
      // Two ranges and a tail: more than one range request is in flight.
      const data = randomBytes(16 * 1024 * 1024 + 12_345);
      await driver.write('/rf/big', bytes(data));
      let counted = 0;
      const file = join(localRoot, 'fetched');
      await fetchRangesInto(at(driver, '/rf/big'), file, data.length, {
        signal,
        sync: false,
        onProgress: (n) => {
          counted += n;
        },
      });
      assert.equal(counted, data.length);
      assert.ok((await readFile(file)).equals(data));
    });

    it('copyBetween into a local mount continues an earlier attempt from its checkpoint, and starts over when the source changed', async (t) => {
      if (!driver.capabilities.rangeRead) return t.skip('no range reads');
      // Between two local mounts a copy runs in the kernel, at disk speed: it starts over.
      if (driver.localPath('/')) return t.skip('a local source is copied again whole');
      const data = randomBytes(3 * 1024 * 1024 + 777);
      await driver.write('/resume/f', bytes(data));
      const entry = await driver.stat('/resume/f');
      assert.ok(entry);
      const kept = 1024 * 1024 + 5;
      // What an earlier attempt left: its checkpointed bytes, here zeros, so the result shows
      // whether they were kept or fetched again, and more after them that was never checkpointed.
      const leftover = async (dst: string) => {
        await local.mkdir('/resumed');
        const temp = tempPathFor(join(localRoot, dst), 'conformance');
        await writeFile(temp, Buffer.concat([Buffer.alloc(kept), randomBytes(4096)]));
      };
      const copy = async (dst: string, modified: number) => {
        const saved: number[] = [];
        const opts = options({
          resume: {
            earlier: { size: data.length, modified, done: kept },
            save: async (c) => {
              saved.push(c.done);
            },
          },
        });
        await copyBetween(at(driver, '/resume/f'), at(local, dst), data.length, opts);
        assert.equal(opts.counted(), data.length, 'every byte counted, kept ones included');
        assert.ok(saved.every((n) => n > kept && n <= data.length));
        return readFile(join(localRoot, dst));
      };
      await leftover('/resumed/same');
      const resumed = await copy('/resumed/same', entry.modified);
      assert.ok(resumed.subarray(0, kept).equals(Buffer.alloc(kept)), 'the checkpointed bytes were kept');
      assert.ok(resumed.subarray(kept).equals(data.subarray(kept)), 'the rest was fetched');
      await leftover('/resumed/changed');
      const whole = await copy('/resumed/changed', entry.modified + 60_000);
      assert.ok(whole.equals(data), 'a source changed since the checkpoint is copied whole');
      assert.deepEqual(await names(local, '/resumed'), ['changed', 'same'], 'no temp left');
    });

    it('places by link or rename only between local ends; otherwise says so and leaves the source', async () => {
      await local.write('/ln/spool', bytes('spooled'));
      const linked = await linkInto(at(local, '/ln/spool'), at(driver, '/ln/placed'), {
        overwrite: false,
        tempKey: 'conformance',
      });
      assert.equal(linked, driver.localPath('/') !== null);
      if (linked) assert.equal((await readAll(await driver.read('/ln/placed'))).toString(), 'spooled');
      else assert.equal(await driver.stat('/ln/placed'), null);
      assert.equal((await readAll(await local.read('/ln/spool'))).toString(), 'spooled');
      if (linked) {
        // Placed again by a retry (the first attempt died before recording it): the two names
        // are links to one file, where a rename does nothing; no temp name may stay.
        for (let attempt = 0; attempt < 2; attempt++) {
          const again = { overwrite: true, tempKey: 'conformance' };
          assert.equal(await linkInto(at(local, '/ln/spool'), at(driver, '/ln/placed'), again), true);
          assert.equal(
            await moveInto(at(local, '/ln/spool'), at(driver, '/ln/placed'), {
              keepSource: true,
              tempKey: 'conformance',
            }),
            true,
          );
        }
        const onDisk = await readdir(join(driver.localPath('/') as string, 'ln'));
        assert.deepEqual(onDisk, ['placed'], 'no temp name left beside the placed file');
      }

      await local.write('/mv/done', bytes('downloaded'));
      const moved = await moveInto(at(local, '/mv/done'), at(driver, '/mv/placed'), {
        keepSource: false,
        tempKey: 'conformance',
      });
      assert.equal(moved, driver.localPath('/') !== null);
      assert.equal(await local.stat('/mv/done').then((e) => e !== null), !moved);
    });

    it('stages small copies into the driver only between local ends', async () => {
      await local.write('/st/a', bytes('a'));
      await local.write('/st/b', bytes('bb'));
      await driver.mkdir('/st-out');
      const tree = StagedTree.open(at(local, '/st'), at(driver, '/st-out'), {
        signal,
        sync: true,
        tempKey: 'conformance',
      });
      if (driver.localPath('/') === null) {
        assert.equal(tree, null);
        return;
      }
      assert.ok(tree);
      const done: string[] = [];
      for (const rel of ['/a', '/b']) {
        const added = await tree.add({
          rel,
          size: rel === '/a' ? 1 : 2,
          overwrite: false,
          placed: () => undefined,
          failed: (err) => assert.fail(String(err)),
          done: async () => {
            done.push(rel);
          },
        });
        assert.equal(added, true);
      }
      await tree.finish();
      assert.deepEqual(done.sort(), ['/a', '/b']);
      assert.equal((await readAll(await driver.read('/st-out/b'))).toString(), 'bb');
    });

    it('extracts an archive on the driver into the driver: in place on a local one, else into a work tree', async () => {
      const zip = new ZipWriter(new Uint8ArrayWriter());
      await zip.add('top.txt', new TextReader('top'));
      await zip.add('dir/inner.bin', new Uint8ArrayReader(new Uint8Array(70_000).fill(7)));
      await driver.write('/ex/a.zip', bytes(Buffer.from(await zip.close())));
      const size = (await driver.stat('/ex/a.zip'))?.size ?? 0;
      const work = at(local, '/work');
      let files = 0;
      const tree = await extractTo(at(driver, '/ex/a.zip'), at(driver, '/ex/out'), work, {
        format: 'zip',
        size,
        password: '',
        innerPath: '/',
        signal,
        guard: new ExtractionGuard(LIMITS, size),
        overwrite: false,
        tempKey: 'conformance',
        sync: false,
        onStage: () => undefined,
        setTotals: () => undefined,
        onBytes: () => undefined,
        onArchiveBytes: () => undefined,
        onFileDone: () => {
          files++;
        },
        onItemFailed: (rel, err) => assert.fail(`${rel}: ${err.message}`),
        onSkippedLink: () => undefined,
      });
      assert.equal(files, 2);
      const out = tree ?? at(driver, '/ex/out');
      assert.equal(tree === null, driver.localPath('/') !== null);
      assert.equal((await readAll(await out.driver.read(`${out.path}/top.txt`))).toString(), 'top');
      assert.equal((await readAll(await out.driver.read(`${out.path}/dir/inner.bin`))).length, 70_000);
      const listing = await listArchiveAt(at(driver, '/ex/a.zip'), at(local, '/listing'), {
        format: 'zip',
        size,
        password: '',
        signal,
      });
      assert.ok(listing.entries.some((e) => e.path === '/dir/inner.bin' && e.size === 70_000));
      assert.equal(await local.stat('/listing'), null, 'the cached copy is removed');
    });
  });
}
