import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileThreads, WriteFailure } from '../../src/io/file-threads.ts';

/** The errno code `promise` rejects with, as a `WriteFailure`. */
async function failureCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof WriteFailure, `a WriteFailure, not ${String(err)}`);
    return err.code;
  }
  assert.fail('it succeeded');
}

describe('small-file threads', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-file-threads-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('keep the memory of finished writes for the next ones, and give it back once idle', async () => {
    const threads = new FileThreads(100);
    const data = threads.buffer(1024 * 1024);
    data.fill(7);
    await threads.write(join(dir, 'a.tmp'), join(dir, 'a.bin'), data, { overwrite: false });
    assert.equal((await readFile(join(dir, 'a.bin'))).length, 1024 * 1024);
    // The buffer came back from the thread and is kept for the next write.
    assert.ok(threads.pooledBytes >= 1024 * 1024, `${threads.pooledBytes} bytes kept`);
    const again = threads.buffer(1024 * 1024);
    assert.equal(threads.pooledBytes, 0, 'the kept memory was handed out again');
    await threads.write(join(dir, 'b.tmp'), join(dir, 'b.bin'), again, { overwrite: false });
    assert.ok(threads.pooledBytes >= 1024 * 1024);
    const held = process.memoryUsage().arrayBuffers;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(threads.pooledBytes, 0, 'idle threads keep no memory');
    // Given back to the system at once, not left for a garbage collection minutes later.
    const freed = held - process.memoryUsage().arrayBuffers;
    assert.ok(freed >= 1024 * 1024, `${freed} bytes of ArrayBuffers freed`);
  });

  it('answer every kind of request from their own module, with errno codes and no temp file left', async () => {
    const threads = new FileThreads(100);
    const at = (...names: string[]) => join(dir, 'kinds', ...names);
    await mkdir(at('sub', 'deep'), { recursive: true });
    await writeFile(at('src.txt'), 'source');
    await writeFile(at('sub', 'deep', 'x.bin'), '12345');
    await symlink(at('src.txt'), at('sub', 'link'));

    // write: placed under its final name; an existing name is refused unless overwritten, and a
    // folder is never replaced.
    await threads.write(at('w.tmp'), at('w.txt'), Buffer.from('written'), { overwrite: false });
    assert.equal(await readFile(at('w.txt'), 'utf8'), 'written');
    assert.equal(
      await failureCode(threads.write(at('w.tmp'), at('w.txt'), Buffer.from('again'), { overwrite: false })),
      'EEXIST',
    );
    await threads.write(at('w.tmp'), at('w.txt'), Buffer.from('replaced'), { overwrite: true, sync: true });
    assert.equal(await readFile(at('w.txt'), 'utf8'), 'replaced');
    assert.equal(
      await failureCode(threads.write(at('w.tmp'), at('sub'), Buffer.from('no'), { overwrite: true })),
      'EINWAY',
    );

    // copy: a missing source fails with its code.
    await threads.copy(at('src.txt'), at('c.tmp'), at('c.txt'), { overwrite: false });
    assert.equal(await readFile(at('c.txt'), 'utf8'), 'source');
    assert.equal(
      await failureCode(threads.copy(at('missing'), at('c.tmp'), at('d.txt'), { overwrite: false })),
      'ENOENT',
    );

    // stage, then place: per item, a link is not copied and an existing name is not replaced.
    const staged = await threads.stage([
      { from: at('src.txt'), temp: at('s1.tmp') },
      { from: at('sub', 'link'), temp: at('s2.tmp') },
      { from: at('src.txt'), temp: at('s3.tmp') },
    ]);
    assert.deepEqual(
      staged.map((f) => f?.code ?? null),
      [null, 'ELOOP', null],
    );
    const placed = await threads.place([
      { temp: at('s1.tmp'), final: at('s1.txt'), overwrite: false },
      { temp: at('s3.tmp'), final: at('c.txt'), overwrite: false },
    ]);
    assert.deepEqual(
      placed.map((f) => f?.code ?? null),
      [null, 'EEXIST'],
    );
    assert.equal(await readFile(at('s1.txt'), 'utf8'), 'source');

    // Every failure above removed its temp file.
    assert.deepEqual(
      (await readdir(at())).filter((name) => name.endsWith('.tmp')),
      [],
    );

    // list and measure: links are listed, never followed.
    const listed = await threads.list(at('sub'));
    assert.deepEqual(
      listed
        .map(({ name, isDir, isLink }) => ({ name, isDir, isLink }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      [
        { name: 'deep', isDir: true, isLink: false },
        { name: 'link', isDir: false, isLink: true },
      ],
    );
    assert.deepEqual(await threads.measure(at('sub'), '.ferry-'), { files: 1, bytes: 5, links: ['link'] });
    assert.equal(await failureCode(threads.list(at('missing'))), 'ENOENT');
    assert.equal(await failureCode(threads.measure(at('missing'), '.ferry-')), 'ENOENT');

    await threads.syncFileSystem(at());
  });
});
