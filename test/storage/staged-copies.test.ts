import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StagedCopies, type StagedFile } from '../../src/storage/local/staged-copies.ts';

/** The file `f<i>` of `src`, copied to `dst` (temp name beside it), reporting to `callbacks`. */
function fileOf(
  src: string,
  dst: string,
  i: number,
  callbacks: Pick<StagedFile, 'placed' | 'failed' | 'done'>,
): StagedFile {
  return {
    src: join(src, `f${i}`),
    temp: join(dst, `.ferry-tmp-f${i}`),
    final: join(dst, `f${i}`),
    overwrite: false,
    ...callbacks,
  };
}

describe('staged small-file copies', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-staged-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('a cancel while a batch is flushed leaves no unhandled rejection, and abandon removes every temp file', async () => {
    // A flush that a cancel stops rejects at once, but its copy's error path may reach abandon()
    // only later: meanwhile that rejection must not count as unhandled (it would end the server;
    // here node:test fails the test on it).
    const src = join(dir, 'src');
    const dst = join(dir, 'dst');
    await mkdir(src);
    await mkdir(dst);
    const count = 1000; // one batch
    for (let i = 0; i < count; i++) await writeFile(join(src, `f${i}`), `file ${i}`);
    const abort = new AbortController();
    const copies = new StagedCopies(dst, abort.signal, true);
    let placed = 0;
    for (let i = 0; i < count; i++) {
      await copies.add(
        fileOf(src, dst, i, {
          placed: () => {
            placed++;
          },
          failed: () => undefined,
          done: async () => undefined,
        }),
        `file ${i}`.length,
      );
    }
    abort.abort();
    await new Promise((r) => setTimeout(r, 300));
    await copies.abandon();
    const left = await readdir(dst);
    assert.deepEqual(
      left.filter((n) => n.startsWith('.ferry-tmp-')),
      [],
      'temp files left',
    );
    assert.equal(left.length, placed, 'only placed files have names');
  });

  it('left to the OS (syncFiles false), every file is placed with its bytes and done once placed', async () => {
    const src = join(dir, 'src-nosync');
    const dst = join(dir, 'dst-nosync');
    await mkdir(src);
    await mkdir(dst);
    const count = 2500; // two full batches and a partial one
    for (let i = 0; i < count; i++) await writeFile(join(src, `f${i}`), `file ${i}`);
    const copies = new StagedCopies(dst, new AbortController().signal, false);
    const placed = new Set<number>();
    const done: number[] = [];
    for (let i = 0; i < count; i++) {
      await copies.add(
        fileOf(src, dst, i, {
          placed: () => placed.add(i),
          failed: (failure) => assert.fail(`f${i} failed: ${failure.message}`),
          done: async () => {
            assert.ok(placed.has(i), `f${i} done before it was placed`);
            done.push(i);
          },
        }),
        `file ${i}`.length,
      );
    }
    await copies.finish();
    assert.equal(done.length, count);
    const names = await readdir(dst);
    assert.equal(names.length, count, 'one name per file, no temp file left');
    assert.equal(await readFile(join(dst, 'f1234'), 'utf8'), 'file 1234');
  });
});
