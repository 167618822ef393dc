import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyLocalFile, KERNEL_COPY_MIN } from '../../src/storage/local/fast-copy.ts';
import { LocalDriver } from '../../src/storage/local/local-driver.ts';
import { TEMP_PREFIX, tempSiblingPath, tempToken } from '../../src/storage/paths.ts';
import { privileged } from '../helpers/privileged.ts';
import { bytes, codeOf, readAll, runDriverConformance, slowSource } from './driver-conformance.ts';

runDriverConformance('Local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'ferry-local-'));
  return { driver: await LocalDriver.open(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every name below `dir` except `skip` (the driver's root), with file contents: what "outside" holds. */
async function snapshot(dir: string, skip: string): Promise<string[]> {
  const names = (await readdir(dir, { recursive: true })).filter(
    (n) => n !== skip && !n.startsWith(`${skip}/`),
  );
  const out: string[] = [];
  for (const name of names.sort()) {
    const info = await stat(join(dir, name));
    out.push(info.isFile() ? `${name}=${await readFile(join(dir, name), 'utf8')}` : `${name}/`);
  }
  return out;
}

describe('Local driver: links and the root boundary', () => {
  let base: string;
  let root: string;
  let driver: LocalDriver;
  let outsideBefore: string[];
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'ferry-links-'));
    root = join(base, 'root');
    await writeFile(join(base, 'secret.txt'), 'top secret');
    await mkdir(join(base, 'outside-dir'));
    await writeFile(join(base, 'outside-dir', 'inner.txt'), 'inner');
    // Shares the root's name as a prefix: a plain startsWith(root) check would let it in.
    await mkdir(join(base, 'root-evil'));
    driver = await LocalDriver.open(root);
    await writeFile(join(root, 'inside.txt'), 'fine');
    await mkdir(join(root, 'sub'));
    await writeFile(join(root, 'sub', 'in-sub.txt'), 'sub file');
    await symlink(join(base, 'secret.txt'), join(root, 'file-link'));
    await symlink(base, join(root, 'dir-link'));
    await symlink(join(base, 'root-evil'), join(root, 'prefix-link'));
    await symlink(join(base, 'not-yet'), join(root, 'dangling'));
    await symlink(join(root, 'inside.txt'), join(root, 'good-link'));
    await symlink('sub', join(root, 'good-dir-link'));
    outsideBefore = await snapshot(base, 'root');
  });
  after(() => rm(base, { recursive: true, force: true }));

  it('refuses reading, writing, listing and renaming through links that leave the root', async () => {
    const x = () => bytes('pwned');
    const refused: [string, () => Promise<unknown>][] = [
      ['read file-link', () => driver.read('/file-link')],
      ['read through dir-link', () => driver.read('/dir-link/secret.txt')],
      ['list dir-link', () => driver.list('/dir-link')],
      ['list dir-link/outside-dir', () => driver.list('/dir-link/outside-dir')],
      ['list prefix-link', () => driver.list('/prefix-link')],
      ['write into dir-link', () => driver.write('/dir-link/new.txt', x())],
      ['write deep into dir-link', () => driver.write('/dir-link/a/b/new.txt', x())],
      ['write into prefix-link', () => driver.write('/prefix-link/new.txt', x())],
      ['write over file-link', () => driver.write('/file-link', x(), { overwrite: true })],
      ['write through dangling', () => driver.write('/dangling', x(), { overwrite: true })],
      ['write under dangling', () => driver.write('/dangling/new.txt', x())],
      ['mkdir in dir-link', () => driver.mkdir('/dir-link/newdir')],
      ['mkdir under dangling', () => driver.mkdir('/dangling/d')],
      ['stat through dir-link', () => driver.stat('/dir-link/secret.txt')],
      ['remove through dir-link', () => driver.remove('/dir-link/secret.txt')],
      ['remove tree through dir-link', () => driver.remove('/dir-link/outside-dir')],
      ['rename from dir-link', () => driver.rename('/dir-link/secret.txt', '/stolen.txt')],
      ['rename into dir-link', () => driver.rename('/inside.txt', '/dir-link/planted.txt')],
      ['rename file-link', () => driver.rename('/file-link', '/moved-link')],
      ['copy file-link', () => driver.copy('/file-link', '/stolen.txt')],
      ['copy into dir-link', () => driver.copy('/inside.txt', '/dir-link/planted.txt')],
      ['free space in dir-link', () => driver.freeSpace('/dir-link/x')],
    ];
    for (const [what, call] of refused) assert.equal(await codeOf(call()), 'E_PATH_OUTSIDE_ROOT', what);
    assert.equal(await driver.stat('/stolen.txt'), null);
    assert.deepEqual(await snapshot(base, 'root'), outsideBefore);
  });

  it('refuses escaping paths in localPath, the engine fast path', () => {
    for (const p of [
      '/file-link',
      '/dir-link/secret.txt',
      '/dir-link/new/deep.txt',
      '/dangling',
      '/prefix-link/x',
    ]) {
      assert.throws(() => driver.localPath(p), { code: 'E_PATH_OUTSIDE_ROOT' }, p);
    }
    assert.throws(() => driver.localPath('/../x'), { code: 'E_PATH_OUTSIDE_ROOT' });
    assert.equal(driver.localPath('/good-link'), join(root, 'good-link'));
    assert.equal(driver.localPath('/good-dir-link/new/file'), join(root, 'good-dir-link', 'new', 'file'));
    assert.equal(driver.localPath('/'), root);
  });

  it('checks a folder again a second after it passed: a link swapped in later is refused', async () => {
    await mkdir(join(root, 'swap', 'x'), { recursive: true });
    await writeFile(join(root, 'swap', 'x', 'f.txt'), 'inside');
    assert.equal((await driver.stat('/swap/x/f.txt'))?.size, 6);
    // Outside: the same names, holding something else.
    await mkdir(join(base, 'swap-target', 'x'), { recursive: true });
    await writeFile(join(base, 'swap-target', 'x', 'f.txt'), 'secret!!');
    await rm(join(root, 'swap'), { recursive: true });
    await symlink(join(base, 'swap-target'), join(root, 'swap'));
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await codeOf(driver.stat('/swap/x/f.txt')), 'E_PATH_OUTSIDE_ROOT');
    assert.throws(() => driver.localPath('/swap/x/f.txt'), /leaves the storage root/);
    await rm(join(root, 'swap'));
    await rm(join(base, 'swap-target'), { recursive: true });
  });

  it('lists escaping links as empty files, and stats them the same way', async () => {
    const entries = new Map((await driver.list('/')).map((e) => [e.name, [e.isDir, e.size]]));
    assert.deepEqual(entries.get('file-link'), [false, 0]);
    assert.deepEqual(entries.get('dir-link'), [false, 0]);
    assert.deepEqual(entries.get('dangling'), [false, 0]);
    assert.deepEqual(entries.get('good-link'), [false, 4], 'an inside link shows its target');
    assert.deepEqual(entries.get('good-dir-link'), [true, 0]);
    const linkStat = await driver.stat('/file-link');
    assert.deepEqual([linkStat?.isDir, linkStat?.size], [false, 0]);
  });

  it('follows links that stay inside the root, for reading, listing and writing', async () => {
    assert.equal((await readAll(await driver.read('/good-link'))).toString(), 'fine');
    assert.deepEqual(
      (await driver.list('/good-dir-link')).map((e) => e.name),
      ['in-sub.txt'],
    );
    await driver.write('/good-dir-link/via-link.txt', bytes('through'));
    assert.equal(await readFile(join(root, 'sub', 'via-link.txt'), 'utf8'), 'through');
  });

  it('removes an escaping link itself, never what it points to', async () => {
    await mkdir(join(root, 'tree'));
    await symlink(base, join(root, 'tree', 'escape'));
    await symlink(join(base, 'secret.txt'), join(root, 'tree', 'escape-file'));
    await driver.remove('/tree');
    await driver.remove('/dir-link');
    await driver.remove('/file-link');
    for (const name of ['tree', 'dir-link', 'file-link']) assert.equal(await driver.stat(`/${name}`), null);
    assert.deepEqual(await snapshot(base, 'root'), outsideBefore);
  });

  it('measures a tree as a walk of its listings counts it: links, temp files and all', async () => {
    await mkdir(join(root, 'sub', 'deep', 'deeper'), { recursive: true });
    await writeFile(join(root, 'sub', 'deep', 'a.bin'), randomBytes(1234));
    await writeFile(join(root, 'sub', 'deep', 'deeper', 'b.bin'), randomBytes(4321));
    await writeFile(join(root, 'sub', `${TEMP_PREFIX}half-written`), randomBytes(999));
    const walk = async (path: string): Promise<{ files: number; bytes: number }> => {
      let files = 0;
      let bytes = 0;
      for (const entry of await driver.list(path)) {
        const inner = entry.isDir ? await walk(entry.path) : { files: 1, bytes: entry.size };
        files += inner.files;
        bytes += inner.bytes;
      }
      return { files, bytes };
    };
    for (const path of ['/', '/sub', '/good-dir-link']) {
      const walked = await walk(path);
      assert.ok(walked.files > 2, `${path}: a tree worth measuring`);
      assert.deepEqual(await driver.measure(path), walked, path);
    }
    // Where there is nothing to measure, the same error as listing it.
    for (const path of ['/inside.txt', '/missing', '/dir-link', '/dangling']) {
      const code = await codeOf(driver.list(path));
      assert.ok(code, `${path} cannot be listed`);
      assert.equal(await codeOf(driver.measure(path)), code, path);
    }
    await rm(join(root, 'sub', 'deep'), { recursive: true });
    await rm(join(root, 'sub', `${TEMP_PREFIX}half-written`));
  });

  it('refuses to list through a link loop, and measures around it', async () => {
    await mkdir(join(root, 'loop', 'inner'), { recursive: true });
    await writeFile(join(root, 'loop', 'inner', 'f.txt'), 'twelve bytes');
    await symlink(join(root, 'loop'), join(root, 'loop', 'inner', 'up'));
    await mkdir(join(root, 'a'));
    await mkdir(join(root, 'b'));
    await symlink(join(root, 'b'), join(root, 'a', 'x'));
    await symlink(join(root, 'a'), join(root, 'b', 'y'));
    await symlink(root, join(root, 'b', 'top'));
    // The link itself lists as the folder it is.
    assert.deepEqual(
      (await driver.list('/loop/inner')).map((e) => [e.name, e.isDir]),
      [
        ['f.txt', false],
        ['up', true],
      ],
    );
    for (const path of ['/loop/inner/up', '/a/x/y', '/b/y/x', '/b/top', '/a/x/top/sub']) {
      assert.equal(await codeOf(driver.list(path)), 'E_INVALID_PATH', path);
      assert.equal(await codeOf(driver.measure(path)), 'E_INVALID_PATH', path);
    }
    // Links that lead elsewhere are still followed.
    assert.deepEqual(
      (await driver.list('/a/x')).map((e) => e.name),
      ['top', 'y'],
    );
    assert.deepEqual(await driver.measure('/loop'), { files: 1, bytes: 12 });
    await rm(join(root, 'loop'), { recursive: true });
    await rm(join(root, 'a'), { recursive: true });
    await rm(join(root, 'b'), { recursive: true });
  });

  it('creates nothing outside the root for traversal attempts', async () => {
    for (const p of ['/../x', '/a/../../x', '..', '/../root-evil/x', '/../../tmp/x']) {
      assert.equal(await codeOf(driver.write(p, bytes('x'))), 'E_PATH_OUTSIDE_ROOT', p);
      assert.equal(await codeOf(driver.mkdir(p)), 'E_PATH_OUTSIDE_ROOT', p);
    }
    assert.deepEqual(await snapshot(base, 'root'), outsideBefore);
  });
});

describe('Local driver specifics', () => {
  let root: string;
  let driver: LocalDriver;
  before(async () => {
    root = join(await mkdtemp(join(tmpdir(), 'ferry-localx-')), 'made-by-open');
    driver = await LocalDriver.open(root);
  });
  after(() => rm(join(root, '..'), { recursive: true, force: true }));

  it('opens: creates a missing root; refuses a relative one or a file', async () => {
    assert.equal((await stat(root)).isDirectory(), true);
    assert.equal(await codeOf(LocalDriver.open('relative/dir')), 'E_STORAGE_CONFIG');
    await writeFile(join(root, '..', 'a-file'), 'x');
    assert.equal(await codeOf(LocalDriver.open(join(root, '..', 'a-file'))), 'E_STORAGE_CONFIG');
  });

  it('never removes the root, however it is spelled', async () => {
    for (const p of ['/', '', '.', '//', '/./'])
      assert.equal(await codeOf(driver.remove(p)), 'E_FORBIDDEN', p);
    assert.equal((await stat(root)).isDirectory(), true);
  });

  it('refuses a rename onto itself or a folder into itself', async () => {
    await driver.write('/self/a/f.txt', bytes('x'));
    assert.equal(await codeOf(driver.rename('/self/a', '/self/a')), 'E_SAME_PATH');
    assert.equal(await codeOf(driver.rename('/self/a', '/self/a/inner')), 'E_BAD_REQUEST');
    assert.equal(await codeOf(driver.rename('/', '/x')), 'E_FORBIDDEN');
    assert.equal((await driver.stat('/self/a/f.txt'))?.size, 1);
  });

  it('overwrite: a folder replaces a folder, a file never replaces a folder', async () => {
    await driver.write('/ovr/new/n.txt', bytes('new'));
    await driver.write('/ovr/old/o.txt', bytes('old'));
    await driver.write('/ovr/file.txt', bytes('f'));
    assert.equal(
      await codeOf(driver.rename('/ovr/file.txt', '/ovr/old', { overwrite: true })),
      'E_IS_A_DIRECTORY',
    );
    assert.equal((await driver.stat('/ovr/old/o.txt'))?.size, 3);
    await driver.rename('/ovr/new', '/ovr/old', { overwrite: true });
    assert.deepEqual(await readdir(join(root, 'ovr')), ['file.txt', 'old']);
    assert.deepEqual(await readdir(join(root, 'ovr', 'old')), ['n.txt']);
  });

  it('refuses invalid byte ranges with E_BAD_REQUEST', async () => {
    await driver.write('/rng.txt', bytes('0123456789'));
    for (const [start, end] of [
      [5, 2],
      [-1, 3],
      [1.5, 3],
    ]) {
      assert.equal(await codeOf(driver.read('/rng.txt', { start, end })), 'E_BAD_REQUEST', `${start}-${end}`);
    }
  });

  it('leaves no temp file on disk after an aborted or failed write or copy', async () => {
    await driver.write(`/tmp-clean/${TEMP_PREFIX}stray`, bytes('hidden'));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    assert.equal(
      await codeOf(driver.write('/tmp-clean/a.bin', slowSource(300), { signal: controller.signal })),
      'E_CANCELED',
    );
    await assert.rejects(driver.write('/tmp-clean/b.bin', slowSource(300, 3)));
    await driver.write('/tmp-clean/c.txt', bytes('c'));
    const copyAbort = new AbortController();
    copyAbort.abort();
    const copying = driver.copy('/tmp-clean/c.txt', '/tmp-clean/d.txt', { signal: copyAbort.signal });
    assert.equal(await codeOf(copying), 'E_CANCELED');
    assert.deepEqual((await readdir(join(root, 'tmp-clean'))).sort(), [`${TEMP_PREFIX}stray`, 'c.txt']);
    assert.deepEqual(
      (await driver.list('/tmp-clean')).map((e) => e.name),
      ['c.txt'],
    );
  });

  it('a retried write or copy never truncates a file its interrupted attempt had linked', async () => {
    // An attempt that died between link(temp, final) and unlink(temp) leaves both names on one inode.
    await driver.write('/retry/f.txt', bytes('placed by the first attempt'));
    const temp = join(root, tempSiblingPath('/retry/f.txt', tempToken('/retry/f.txt', 'task-1')));
    await link(join(root, 'retry', 'f.txt'), temp);
    await assert.rejects(
      driver.write('/retry/f.txt', slowSource(300, 3), { overwrite: true, tempKey: 'task-1' }),
    );
    assert.equal(await readFile(join(root, 'retry', 'f.txt'), 'utf8'), 'placed by the first attempt');
    await link(join(root, 'retry', 'f.txt'), temp);
    await driver.write('/retry/src.txt', bytes('other'));
    const copyAbort = new AbortController();
    copyAbort.abort();
    const copying = driver.copy('/retry/src.txt', '/retry/f.txt', {
      overwrite: true,
      tempKey: 'task-1',
      signal: copyAbort.signal,
    });
    assert.equal(await codeOf(copying), 'E_CANCELED');
    assert.equal(await readFile(join(root, 'retry', 'f.txt'), 'utf8'), 'placed by the first attempt');
  });

  it('finishes a file rename that was interrupted between link and unlink', async () => {
    await driver.write('/half/a.txt', bytes('moving'));
    await link(join(root, 'half', 'a.txt'), join(root, 'half', 'b.txt'));
    await driver.rename('/half/a.txt', '/half/b.txt');
    assert.deepEqual(await readdir(join(root, 'half')), ['b.txt']);
    assert.equal(await readFile(join(root, 'half', 'b.txt'), 'utf8'), 'moving');
  });

  it('copy reports progress and refuses a folder source', async () => {
    const data = randomBytes(9 * 1024 * 1024);
    await driver.write('/cpp/src.bin', bytes(data));
    let reported = 0;
    await driver.copy('/cpp/src.bin', '/cpp/dst.bin', { onProgress: (n) => (reported += n) });
    assert.equal(reported, data.length);
    assert.equal(sha256(await readFile(join(root, 'cpp', 'dst.bin'))), sha256(data));
    assert.equal(await codeOf(driver.copy('/cpp', '/cpp2')), 'E_IS_A_DIRECTORY');
    assert.equal(await codeOf(driver.copy('/cpp/src.bin', '/cpp/src.bin')), 'E_SAME_PATH');
  });

  it('reports free space, also below folders that do not exist yet', async () => {
    assert.ok(((await driver.freeSpace('/')) ?? 0) > 0);
    assert.ok(((await driver.freeSpace('/no/such/folder')) ?? 0) > 0);
  });
});

describe('copyLocalFile', () => {
  let dir: string;
  let srcHash: string;
  const size = 64 * 1024 * 1024 + 123;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-fastcopy-'));
    const data = randomBytes(size);
    srcHash = sha256(data);
    await writeFile(join(dir, 'src'), data);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('copies 64 MB byte for byte, reports every byte, and keeps memory flat', async () => {
    let reported = 0;
    let calls = 0;
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = 0;
    await copyLocalFile(join(dir, 'src'), join(dir, 'dst'), {
      onProgress: (n) => {
        reported += n;
        calls++;
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
      },
    });
    assert.equal(reported, size);
    assert.ok(calls >= 16, `progress came chunk by chunk (${calls} calls)`);
    assert.ok(peak < 32 * 1024 * 1024, `buffers stayed small (${peak} bytes)`);
    assert.equal(sha256(await readFile(join(dir, 'dst'))), srcHash);
  });

  it('stops within milliseconds when aborted mid-copy, with E_CANCELED', async () => {
    const controller = new AbortController();
    let seen = 0;
    let abortedAt = 0;
    const copying = copyLocalFile(join(dir, 'src'), join(dir, 'aborted'), {
      signal: controller.signal,
      chunkSize: 64 * 1024,
      onProgress: (n) => {
        seen += n;
        if (seen > 4 * 1024 * 1024 && !abortedAt) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
    assert.equal(await codeOf(copying), 'E_CANCELED');
    assert.ok(abortedAt > 0, 'the abort landed mid-copy');
    assert.ok(performance.now() - abortedAt < 200, 'stopped promptly');
    assert.ok((await stat(join(dir, 'aborted'))).size < size);
  });

  it('copies a file past KERNEL_COPY_MIN through cp: identical, every byte reported, canceled at once', async () => {
    const big = join(dir, 'big');
    const data = randomBytes(KERNEL_COPY_MIN + 4321);
    await writeFile(big, data);
    let reported = 0;
    await copyLocalFile(big, join(dir, 'big-copy'), { onProgress: (n) => (reported += n) });
    assert.equal(reported, data.length);
    assert.equal(sha256(await readFile(join(dir, 'big-copy'))), sha256(data));

    const controller = new AbortController();
    const copying = copyLocalFile(big, join(dir, 'big-aborted'), { signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const asked = performance.now();
    assert.equal(await codeOf(copying), 'E_CANCELED');
    assert.ok(performance.now() - asked < 500, 'the cp child was killed promptly');
    await rm(join(dir, 'big'));
  });

  it('a disk that fills up mid-copy fails the copy with E_NO_SPACE, and nothing else', async (t) => {
    // A 1 MiB tmpfs (root may mount one) runs out while the loop reads its next chunk: the write's
    // failure must reach the copy, not the process as an unhandled rejection.
    const full = join(dir, 'full');
    await mkdir(full);
    const mounted = await new Promise<boolean>((resolve) =>
      execFile('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', full], (err) => resolve(err === null)),
    );
    if (!privileged(t, mounted, 'mounting a tmpfs')) return;
    try {
      const copying = copyLocalFile(join(dir, 'src'), join(full, 'dst'), { chunkSize: 256 * 1024 });
      assert.equal(await codeOf(copying), 'E_NO_SPACE');
      // A moment for a stray rejection to surface (node:test fails the test on one).
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await new Promise<void>((resolve) => execFile('umount', [full], () => resolve()));
    }
  });

  it('copies small and empty files, with or without a size hint', async () => {
    await writeFile(join(dir, 'small'), 'small file');
    await writeFile(join(dir, 'empty'), '');
    for (const [name, sizeHint] of [
      ['small', 10],
      ['small', undefined],
      ['empty', 0],
      ['empty', undefined],
    ] as const) {
      let reported = 0;
      await copyLocalFile(join(dir, name), join(dir, `${name}-copy`), {
        sizeHint,
        onProgress: (n) => (reported += n),
      });
      assert.equal(await readFile(join(dir, `${name}-copy`), 'utf8'), name === 'small' ? 'small file' : '');
      assert.equal(reported, name === 'small' ? 10 : 0);
    }
  });

  it('replaces dst rather than truncating it, so a file linked to it is safe', async () => {
    await writeFile(join(dir, 'precious'), 'precious');
    await link(join(dir, 'precious'), join(dir, 'linked-temp'));
    await copyLocalFile(join(dir, 'small'), join(dir, 'linked-temp'));
    assert.equal(await readFile(join(dir, 'precious'), 'utf8'), 'precious');
    assert.equal(await readFile(join(dir, 'linked-temp'), 'utf8'), 'small file');
  });

  it('maps errors: missing source E_NOT_FOUND, already aborted E_CANCELED', async () => {
    assert.equal(await codeOf(copyLocalFile(join(dir, 'nope'), join(dir, 'x'))), 'E_NOT_FOUND');
    assert.equal(
      await codeOf(copyLocalFile(join(dir, 'nope'), join(dir, 'x'), { sizeHint: 5 })),
      'E_NOT_FOUND',
    );
    const controller = new AbortController();
    controller.abort();
    const copying = copyLocalFile(join(dir, 'src'), join(dir, 'x'), { signal: controller.signal });
    assert.equal(await codeOf(copying), 'E_CANCELED');
  });
});
