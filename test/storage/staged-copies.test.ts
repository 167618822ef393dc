import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StagedCopies } from '../../src/storage/local/staged-copies.ts';

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
    const copies = new StagedCopies(dst, abort.signal);
    let placed = 0;
    for (let i = 0; i < count; i++) {
      await copies.add(
        {
          src: join(src, `f${i}`),
          temp: join(dst, `.ferry-tmp-f${i}`),
          final: join(dst, `f${i}`),
          overwrite: false,
          placed: () => {
            placed++;
          },
          failed: () => undefined,
          done: async () => undefined,
        },
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
});
