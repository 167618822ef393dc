import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type FileEntry, TextWriter, Uint8ArrayReader, ZipReader } from '@zip.js/zip.js';
import { sevenZipBinary } from '../src/archive/index.ts';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { mountWebDav, type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';
import { requireTools, runs } from './helpers/tools.ts';
import { diffSnapshots, findTempFiles, snapshotTree, writeRandomFile } from './helpers/tree.ts';

/**
 * Decompress through AList's archive API: archives built here by Debian's own tools (zip, 7-Zip,
 * tar with gzip/bzip2/xz/zstd), extracted by ferry to Local and, through decompress_upload, to a
 * WebDAV server (rclone on loopback), compared file by file by SHA-256 with the tree they were
 * made from. Then hostile archives (zip-slip, absolute names, a symlink leading out, a zip bomb,
 * truncated data, wrong passwords) must be refused with clear errors and write nothing outside.
 *
 * rar: 7-Zip cannot write rar and Debian's `rar` is non-free, so no real rar is built; the test
 * only shows a `.rar` is handed to 7-Zip (its error names 7-Zip).
 */

/** Debian programs the test builds archives with (and the package each comes from). */
const TOOLS: [string, string][] = [
  ['zip', 'zip'],
  ['tar', 'tar'],
  ['bzip2', 'bzip2'],
  ['xz', 'xz-utils'],
  ['zstd', 'zstd'],
  ['python3', 'python3'],
];

/** True when every tool is there (see `requireTools` for what happens when one is not). */
function toolsAvailable(): boolean {
  const missing = TOOLS.filter(([cmd]) => !runs(cmd, ['--help'])).map(([, pkg]) => pkg);
  if (!sevenZipBinary()) missing.push('7zip');
  return requireTools('the decompress tests', missing) && rcloneAvailable();
}

interface TaskView {
  id: string;
  name: string;
  state: string;
  status: string;
  error: string;
  total_bytes: number;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
}

const DONE = new Set(['succeeded', 'canceled', 'failed']);
const PASSWORD = 'open-sesame-42';

function run(cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString()}`);
}

/** Run a small Python program (zipfile/tarfile write the hostile archives no CLI will). */
function python(code: string): void {
  run('python3', ['-c', code]);
}

describe('decompress through the AList archive API', { skip: !toolsAvailable() }, () => {
  let h: Harness;
  let dav: RcloneServer;
  let files: string;
  let source: string;
  let expected: Map<string, string>;
  let outside: string;
  const sevenZip = sevenZipBinary() ?? '7z';

  const info = async (type: string, id: string): Promise<TaskView> => {
    const res = await h.json<TaskView[]>('POST', `/api/task/${type}/info?tid=${encodeURIComponent(id)}`, {
      token: h.adminToken,
    });
    assert.equal(res.code, 200, `info ${type} ${id}: ${res.message}`);
    return res.data[0] as TaskView;
  };
  const finished = (type: string, id: string, timeoutMs = 30_000) =>
    waitFor(
      async () => {
        const t = await info(type, id);
        return DONE.has(t.state) ? t : undefined;
      },
      timeoutMs,
      `${type} task ${id}`,
    );
  const decompress = async (body: Record<string, unknown>) => {
    const res = await h.json<{ tasks: TaskView[] }>('POST', '/api/fs/archive/decompress', {
      token: h.adminToken,
      body: { src_dir: '/local/arc', overwrite: false, put_into_new_dir: false, inner_path: '/', ...body },
    });
    assert.equal(res.code, 200, `decompress ${JSON.stringify(body)}: ${res.message}`);
    return res.data.tasks;
  };
  /** Decompress one archive and wait for its task. */
  const extract = async (name: string, dstDir: string, extra: Record<string, unknown> = {}) => {
    const [task] = await decompress({ name: [name], dst_dir: dstDir, ...extra });
    assert.ok(task);
    return finished('decompress', task.id);
  };
  const pick = (prefix: string, rename: string) => {
    const out = new Map<string, string>();
    for (const [k, v] of expected)
      if (k === prefix || k.startsWith(`${prefix}/`)) out.set(rename + k.slice(prefix.length), v);
    return out;
  };

  before(async () => {
    const t0 = Date.now();
    dav = await startRclone('webdav');
    h = await startHarness({
      // Low limits so a bomb is caught quickly; the real tree stays well below them.
      archive: {
        maxTotalBytes: 64 * 1024 * 1024,
        maxEntries: 500,
        maxRatio: 50,
        ratioGraceBytes: 1024 * 1024,
      },
    });
    const res = await h.json('POST', '/api/admin/storage/create', {
      token: h.adminToken,
      body: {
        mount_path: '/dav',
        driver: 'WebDav',
        addition: JSON.stringify({
          address: dav.address,
          username: dav.username,
          password: dav.password,
          root_folder_path: '/',
          vendor: 'other',
        }),
      },
    });
    assert.equal(res.code, 200, res.message);
    files = join(h.dataDir, 'files');
    outside = await mkdtemp(join(tmpdir(), 'ferry-outside-'));
    // The source tree: nested folders, an empty one, a few files (one of 3 MB, which ferry writes
    // from memory, one of 5 MB, which it streams), a non-ASCII name.
    source = await mkdtemp(join(tmpdir(), 'ferry-arc-src-'));
    await mkdir(join(source, 'a', 'b', 'c'), { recursive: true });
    await mkdir(join(source, 'empty'));
    await writeFile(join(source, 'top.txt'), 'top\n');
    await writeFile(join(source, 'a', 'hello ü.txt'), 'hello archive\n');
    await writeRandomFile(join(source, 'a', 'b', 'big.bin'), 3 * 1024 * 1024 + 17);
    await writeRandomFile(join(source, 'a', 'large.bin'), 5 * 1024 * 1024 + 5);
    await writeFile(join(source, 'a', 'b', 'c', 'deep.txt'), 'deep\n'.repeat(1000));
    expected = await snapshotTree(source);

    const arc = join(files, 'arc');
    await mkdir(arc, { recursive: true });
    const p = (name: string) => join(arc, name);
    run('zip', ['-qr', p('tree.zip'), '.'], source);
    run('zip', ['-qr0', p('stored.zip'), '.'], source);
    run('zip', ['-qr', '-P', PASSWORD, p('zipcrypto.zip'), '.'], source);
    run(sevenZip, ['a', '-bd', '-tzip', '-mem=AES256', `-p${PASSWORD}`, p('aes.zip'), '.'], source);
    run(sevenZip, ['a', '-bd', p('tree.7z'), '.'], source);
    run(sevenZip, ['a', '-bd', `-p${PASSWORD}`, '-mhe=on', p('secret.7z'), '.'], source);
    run('tar', ['-cf', p('tree.tar'), '-C', source, '.']);
    run('tar', ['-czf', p('tree.tar.gz'), '-C', source, '.']);
    run('tar', ['-cjf', p('tree.tar.bz2'), '-C', source, '.']);
    run('tar', ['-cJf', p('tree.tar.xz'), '-C', source, '.']);
    run('tar', ['--zstd', '-cf', p('tree.tar.zst'), '-C', source, '.']);

    // Hostile archives.
    const evil = join(outside, 'evil.txt');
    python(`
import zipfile, tarfile, io
z = zipfile.ZipFile(${JSON.stringify(p('slip.zip'))}, 'w')
z.writestr('ok.txt', 'fine')
z.writestr('../../../../../../..${evil}', 'escaped')
z.close()
z = zipfile.ZipFile(${JSON.stringify(p('absolute.zip'))}, 'w')
z.writestr(zipfile.ZipInfo(${JSON.stringify(evil)}), 'escaped')
z.close()
z = zipfile.ZipFile(${JSON.stringify(p('crc.zip'))}, 'w', zipfile.ZIP_STORED)
z.writestr('data.txt', 'A' * 1000)
z.close()
z = zipfile.ZipFile(${JSON.stringify(p('liar.zip'))}, 'w', zipfile.ZIP_DEFLATED)
z.writestr('small.txt', 'B' * 100000)
z.close()
z = zipfile.ZipFile(${JSON.stringify(p('bomb.zip'))}, 'w', zipfile.ZIP_DEFLATED)
z.writestr('zeros.bin', bytes(40 * 1024 * 1024))
z.close()
def add(t, name, data=None, link=None):
    i = tarfile.TarInfo(name)
    if link is not None:
        i.type = tarfile.SYMTYPE
        i.linkname = link
        t.addfile(i)
    else:
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))
t = tarfile.open(${JSON.stringify(p('symlink.tar'))}, 'w')
add(t, 'ok.txt', b'fine')
add(t, 'link', link=${JSON.stringify(outside)})
add(t, 'link/evil.txt', b'escaped')
t.close()
t = tarfile.open(${JSON.stringify(p('absolute.tar.gz'))}, 'w:gz')
add(t, ${JSON.stringify(evil)}, b'escaped')
t.close()
t = tarfile.open(${JSON.stringify(p('slip.tar'))}, 'w')
add(t, '../../../../../../..${evil}', b'escaped')
t.close()
`);
    // The same bomb for 7-Zip, which ferry measures on disk while it runs.
    const zeros = await mkdtemp(join(tmpdir(), 'ferry-arc-zeros-'));
    await writeFile(join(zeros, 'zeros.bin'), Buffer.alloc(40 * 1024 * 1024));
    run(sevenZip, ['a', '-bd', p('bomb.7z'), 'zeros.bin'], zeros);
    await rm(zeros, { recursive: true, force: true });
    const gz = await readFile(p('tree.tar.gz'));
    await writeFile(p('truncated.tar.gz'), gz.subarray(0, Math.floor(gz.length / 2)));
    const zip = await readFile(p('tree.zip'));
    await writeFile(p('truncated.zip'), zip.subarray(0, Math.floor(zip.length / 2)));
    // A flipped byte in a stored entry: its CRC-32 no longer matches.
    const crc = await readFile(p('crc.zip'));
    crc[crc.indexOf('AAAA') + 500] = 0x42;
    await writeFile(p('crc.zip'), crc);
    // An entry whose headers state 1,000 bytes where 100,000 inflate (both sizes patched).
    const liar = await readFile(p('liar.zip'));
    liar.writeUInt32LE(1000, liar.indexOf('PK\x03\x04') + 22);
    liar.writeUInt32LE(1000, liar.indexOf('PK\x01\x02') + 24);
    await writeFile(p('liar.zip'), liar);
    // Not a real rar (none can be made with free tools): enough to see it is handed to 7-Zip.
    await writeFile(p('fake.rar'), 'Rar!\x1a\x07\x00 not really a rar archive');
    console.log(`# built the archives in ${Date.now() - t0} ms`);
  });

  after(async () => {
    await h?.close();
    await dav?.close();
    if (source) await rm(source, { recursive: true, force: true });
    if (outside) await rm(outside, { recursive: true, force: true });
  });

  it('extracts every format byte-identical to its source tree, to Local, with and without password', async () => {
    const cases: [string, string][] = [
      ['tree.zip', ''],
      ['stored.zip', ''],
      ['zipcrypto.zip', PASSWORD],
      ['aes.zip', PASSWORD],
      ['tree.7z', ''],
      ['secret.7z', PASSWORD],
      ['tree.tar', ''],
      ['tree.tar.gz', ''],
      ['tree.tar.bz2', ''],
      ['tree.tar.xz', ''],
      ['tree.tar.zst', ''],
    ];
    const t0 = Date.now();
    const tasks = await Promise.all(
      cases.map(async ([name, pass]) => {
        const [task] = await decompress({ name: [name], dst_dir: `/local/out/${name}`, archive_pass: pass });
        assert.ok(task);
        if (pass) assert.match(task.name, new RegExp(`with password <${pass}>$`));
        return { name, task };
      }),
    );
    assert.equal(
      tasks[0]?.task.name,
      'decompress [/local](/arc/tree.zip)[/] to [/local](/out/tree.zip) with password <>',
    );
    for (const { name, task } of tasks) {
      const done = await finished('decompress', task.id);
      assert.equal(done.state, 'succeeded', `${name}: ${done.error}`);
      assert.equal(done.processed_files, 5, `${name}: files counted`);
      if (!name.includes('.tar')) assert.equal(done.total_files, 5, `${name}: files announced`);
      assert.equal(done.processed_bytes, done.total_bytes, `${name}: bytes counted`);
      const out = join(files, 'out', name);
      assert.deepEqual(diffSnapshots(await snapshotTree(out), expected), [], name);
      assert.deepEqual(await findTempFiles(out), [], `${name}: temp files left`);
    }
    console.log(`# ${cases.length} archives extracted to Local in ${Date.now() - t0} ms`);
  });

  it('extracts only inner_path, and into a new folder named after the archive', async () => {
    for (const name of ['tree.zip', 'tree.tar.gz', 'tree.7z', 'secret.7z']) {
      const done = await extract(name, `/local/inner/${name}`, {
        inner_path: '/a/b',
        archive_pass: name === 'secret.7z' ? PASSWORD : '',
      });
      assert.equal(done.state, 'succeeded', `${name}: ${done.error}`);
      assert.deepEqual(
        diffSnapshots(await snapshotTree(join(files, 'inner', name)), pick('/a/b', '/b')),
        [],
        name,
      );
    }
    const one = await extract('tree.tar.xz', '/local/inner/one-file', { inner_path: '/a/hello ü.txt' });
    assert.equal(one.state, 'succeeded', one.error);
    assert.deepEqual([...(await snapshotTree(join(files, 'inner', 'one-file'))).keys()], ['/hello ü.txt']);
    const missing = await extract('tree.zip', '/local/inner/missing', { inner_path: '/nope' });
    assert.equal(missing.state, 'failed');
    assert.match(missing.error, /not in the archive/);

    const newDir = await extract('tree.tar.bz2', '/local/newdir', { put_into_new_dir: true });
    assert.equal(newDir.state, 'succeeded', newDir.error);
    assert.deepEqual(diffSnapshots(await snapshotTree(join(files, 'newdir', 'tree')), expected), []);
  });

  it('refuses to overwrite without overwrite, and replaces with it', async () => {
    const again = await extract('tree.tar', '/local/out/tree.tar');
    assert.equal(again.state, 'failed');
    assert.match(again.error, /could not be placed|already exists/);
    const forced = await extract('tree.tar', '/local/out/tree.tar', { overwrite: true });
    assert.equal(forced.state, 'succeeded', forced.error);
    assert.deepEqual(diffSnapshots(await snapshotTree(join(files, 'out', 'tree.tar')), expected), []);
  });

  it('extracts to WebDAV through a decompress_upload task, and from WebDAV to Local', async () => {
    const t0 = Date.now();
    for (const [name, pass] of [
      ['tree.zip', ''],
      ['tree.tar.zst', ''],
      ['secret.7z', PASSWORD],
    ] as const) {
      const done = await extract(name, `/dav/${name}`, { archive_pass: pass });
      assert.equal(done.state, 'succeeded', `${name}: ${done.error}`);
      const upload = await finished('decompress_upload', `${done.id}-upload`);
      assert.equal(upload.name, `upload ${name} to [/dav](/${name})`);
      assert.equal(upload.state, 'succeeded', `${name} upload: ${upload.error}`);
      assert.ok(upload.processed_bytes > 3 * 1024 * 1024, 'upload counts its bytes');
      assert.deepEqual(diffSnapshots(await snapshotTree(join(dav.root, name)), expected), [], name);
    }
    // The temp areas are gone once the uploads succeeded.
    await waitFor(
      async () => ((await readdir(join(h.dataDir, 'decompress'))).length === 0 ? true : undefined),
      5000,
      'temp areas removed',
    );

    // An archive on WebDAV is cached to the data directory first.
    // Written through the driver: rclone caches its listings, so a file put on its disk stays unseen.
    const remote = h.core.mounts.resolve('/dav/remote.tar.gz');
    await remote.driver.write(remote.path, createReadStream(join(files, 'arc', 'tree.tar.gz')));
    const [task] = await decompress({ src_dir: '/dav', name: ['remote.tar.gz'], dst_dir: '/local/from-dav' });
    assert.ok(task);
    const done = await finished('decompress', task.id);
    assert.equal(done.state, 'succeeded', done.error);
    assert.deepEqual(diffSnapshots(await snapshotTree(join(files, 'from-dav')), expected), []);
    console.log(`# WebDAV round trips in ${Date.now() - t0} ms`);
  });

  it('lists entries with archive/list and archive/meta for zip, tar.gz and 7z; a wrong password is code 202', async () => {
    for (const [name, pass] of [
      ['tree.zip', ''],
      ['tree.tar.gz', ''],
      ['tree.7z', ''],
      ['secret.7z', PASSWORD],
      ['aes.zip', PASSWORD],
    ] as const) {
      const list = await h.json<{
        content: { name: string; size: number; is_dir: boolean }[];
        total: number;
      }>('POST', '/api/fs/archive/list', {
        token: h.adminToken,
        body: { path: `/local/arc/${name}`, archive_pass: pass, inner_path: '/a/b' },
      });
      assert.equal(list.code, 200, `${name}: ${list.message}`);
      const byName = new Map(list.data.content.map((e) => [e.name, e]));
      assert.equal(list.data.total, 2, name);
      assert.deepEqual(byName.get('big.bin'), {
        ...byName.get('big.bin'),
        size: 3 * 1024 * 1024 + 17,
        is_dir: false,
      });
      assert.equal(byName.get('c')?.is_dir, true, name);

      const meta = await h.json<{
        encrypted: boolean;
        content: { name: string; is_dir: boolean; children?: { name: string }[] }[];
      }>('POST', '/api/fs/archive/meta', {
        token: h.adminToken,
        body: { path: `/local/arc/${name}`, archive_pass: pass },
      });
      assert.equal(meta.code, 200, `${name}: ${meta.message}`);
      assert.equal(meta.data.encrypted, pass !== '', name);
      const top = meta.data.content.map((e) => `${e.name}${e.is_dir ? '/' : ''}`).sort();
      assert.deepEqual(top, ['a/', 'empty/', 'top.txt'], name);
      const a = meta.data.content.find((e) => e.name === 'a');
      assert.deepEqual(a?.children?.map((e) => e.name).sort(), ['b', 'hello ü.txt', 'large.bin'], name);
    }
    for (const [name, pass, pattern] of [
      ['secret.7z', 'wrong', /wrong archive password/],
      ['secret.7z', '', /password is required/],
      ['aes.zip', 'wrong', /wrong archive password/],
      ['zipcrypto.zip', 'wrong', /wrong archive password/],
    ] as const) {
      const res = await h.json('POST', '/api/fs/archive/list', {
        token: h.adminToken,
        body: { path: `/local/arc/${name}`, archive_pass: pass },
      });
      assert.equal(res.code, 202, `${name} with ${JSON.stringify(pass)}: ${res.message}`);
      assert.match(res.message, pattern);
    }
    const notArchive = await h.json('POST', '/api/fs/archive/meta', {
      token: h.adminToken,
      body: { path: '/local/arc/tree.tar.gz/x' },
    });
    assert.equal(notArchive.code, 404);
  });

  it('refuses hostile archives with clear errors, writes nothing outside, and keeps serving', async () => {
    const cases: [string, RegExp, string?][] = [
      ['slip.zip', /leaves the destination/],
      ['absolute.zip', /absolute path/],
      ['slip.tar', /leaves the destination/],
      ['absolute.tar.gz', /absolute path/],
      ['symlink.tar', /points outside the destination/],
      ['bomb.zip', /zip bomb|bytes per archive byte/],
      ['bomb.7z', /zip bomb|bytes per archive byte/],
      ['truncated.tar.gz', /damaged tar\.gz archive/],
      ['truncated.zip', /zip archive/],
      ['crc.zip', /data\.txt fails its CRC-32/],
      ['liar.zip', /small\.txt does not inflate to its stated size/],
      ['zipcrypto.zip', /wrong archive password/, 'wrong'],
      ['aes.zip', /password is required/, ''],
      ['secret.7z', /wrong archive password/, 'wrong'],
      ['fake.rar', /7-Zip could not read the rar archive/],
    ];
    for (const [name, pattern, pass] of cases) {
      const t0 = Date.now();
      const done = await extract(name, `/local/hostile/${name}`, { archive_pass: pass ?? '' });
      assert.equal(done.state, 'failed', `${name} should fail`);
      console.log(`# ${name}: refused in ${Date.now() - t0} ms: ${done.error}`);
      assert.match(done.error, pattern, name);
      const out = join(files, 'hostile', name);
      assert.deepEqual(await findTempFiles(out).catch(() => []), [], `${name}: temp files left`);
      // Nothing escaped: the outside folder is empty and nothing named evil landed anywhere in the mount.
      assert.deepEqual(await readdir(outside), [], `${name} wrote outside`);
    }
    // A link already in the destination may not lead the extraction elsewhere.
    await mkdir(join(files, 'trap'), { recursive: true });
    await symlink(outside, join(files, 'trap', 'a'));
    const trapped = await extract('tree.zip', '/local/trap');
    assert.equal(trapped.state, 'failed');
    assert.match(trapped.error, /a link in the destination leads/);
    assert.deepEqual(await readdir(outside), [], 'the link in the destination was followed');
    await rm(join(files, 'trap'), { recursive: true });
    const all = [...(await snapshotTree(h.dataDir)).keys()];
    assert.deepEqual(
      all.filter((p) => p.includes('evil') || p.includes('zeros.bin')),
      [],
      'an escaped or bomb file was left behind',
    );
    for (const bomb of ['bomb.zip', 'bomb.7z']) {
      const bombOut = await snapshotTree(join(files, 'hostile', bomb)).catch(() => new Map());
      assert.equal(bombOut.size, 0, `${bomb} left a file`);
    }
    // Failed tasks keep no cached, staged or half-extracted data.
    assert.deepEqual(await readdir(join(h.dataDir, 'decompress')), []);
    const ping = await h.call('GET', '/ping');
    assert.equal(ping.body, 'pong');
  });

  it("refuses a wrong password that passes ZipCrypto's one-byte check, in a listing and in an extraction", async () => {
    // ZipCrypto checks a password against one byte of its header: one wrong password in 256
    // passes. Unchecked, such a password lists fine and extracts garbage.
    const lucky = join(files, 'arc', 'lucky');
    await mkdir(lucky, { recursive: true });
    await writeFile(join(lucky, 'note.txt'), 'a note that deflates well\n'.repeat(200));
    await writeRandomFile(join(lucky, 'raw.bin'), 64 * 1024);
    run('zip', ['-q', '-P', PASSWORD, join(files, 'arc', 'lucky-deflated.zip'), 'note.txt'], lucky);
    run('zip', ['-q0', '-P', PASSWORD, join(files, 'arc', 'lucky-stored.zip'), 'raw.bin'], lucky);
    // An empty entry proves no password: it decrypts to nothing, whose CRC-32 is always right.
    await writeFile(join(lucky, 'empty.txt'), '');
    run('zip', ['-q', '-P', PASSWORD, join(files, 'arc', 'lucky-empty.zip'), 'empty.txt', 'note.txt'], lucky);
    const listedEmpty = await h.json('POST', '/api/fs/archive/list', {
      token: h.adminToken,
      body: {
        path: '/local/arc/lucky-empty.zip',
        archive_pass: await passingWrongPassword(join(files, 'arc', 'lucky-empty.zip'), 'empty.txt'),
      },
    });
    assert.equal(listedEmpty.code, 202, `lucky-empty.zip: ${listedEmpty.message}`);
    await rm(join(lucky, 'empty.txt'));
    const source = await snapshotTree(lucky);
    for (const [name, file] of [
      ['lucky-deflated.zip', '/note.txt'],
      ['lucky-stored.zip', '/raw.bin'],
    ] as const) {
      const wrong = await passingWrongPassword(join(files, 'arc', name), file.slice(1));
      const list = await h.json('POST', '/api/fs/archive/list', {
        token: h.adminToken,
        body: { path: `/local/arc/${name}`, archive_pass: wrong },
      });
      assert.equal(list.code, 202, `${name} listed with ${wrong}: ${list.message}`);
      assert.match(list.message, /wrong archive password/);
      const out = join(files, 'lucky-out', name);
      const done = await extract(name, `/local/lucky-out/${name}`, { archive_pass: wrong });
      assert.equal(done.state, 'failed', `${name} extracted with ${wrong}`);
      assert.match(done.error, /wrong archive password/, name);
      assert.equal(
        (await snapshotTree(out).catch(() => new Map())).size,
        0,
        `${name}: written with a wrong password`,
      );
      // The right password still opens it.
      const good = await extract(name, `/local/lucky-out/${name}`, { archive_pass: PASSWORD });
      assert.equal(good.state, 'succeeded', good.error);
      assert.deepEqual([...(await snapshotTree(out))], [[file, source.get(file)]]);
    }
  });

  it("refuses a wrong password that passes AES's two-byte check, in a listing and in an extraction", async () => {
    // One wrong password in 65,536 passes an AES entry's two-byte check; finding one takes about a
    // minute of PBKDF2, so the archive is a fixture: note.txt (5,200 bytes, deflated) made by
    // `7zz a -tzip -mem=AES256 -pright-password`, and `wrong-49181` found by trying `wrong-<n>`
    // against the check bytes (PBKDF2-HMAC-SHA1 of the entry's salt, 1,000 rounds).
    const right = 'right-password';
    const wrong = 'wrong-49181';
    await cp(
      join(import.meta.dirname, 'fixtures', 'aes-lucky-password.zip'),
      join(files, 'arc', 'aes-lucky.zip'),
    );
    const reader = new ZipReader(new Uint8ArrayReader(await readFile(join(files, 'arc', 'aes-lucky.zip'))));
    const [entry] = (await reader.getEntries()) as FileEntry[];
    assert.ok(entry?.encrypted && !entry.zipCrypto, 'the fixture holds an AES entry');
    // The premise: zip.js' own password check lets the wrong password through.
    await entry.getData(new TextWriter(), { password: wrong, checkPasswordOnly: true });
    const note = 'a note that deflates well\n'.repeat(200);
    assert.equal(await entry.getData(new TextWriter(), { password: right }), note);

    const list = await h.json('POST', '/api/fs/archive/list', {
      token: h.adminToken,
      body: { path: '/local/arc/aes-lucky.zip', archive_pass: wrong },
    });
    assert.equal(list.code, 202, list.message);
    assert.match(list.message, /wrong archive password/);
    const out = join(files, 'aes-out');
    const done = await extract('aes-lucky.zip', '/local/aes-out', { archive_pass: wrong });
    assert.equal(done.state, 'failed');
    assert.match(done.error, /wrong archive password/);
    assert.equal((await snapshotTree(out).catch(() => new Map())).size, 0, 'written with a wrong password');
    const good = await extract('aes-lucky.zip', '/local/aes-out', { archive_pass: right });
    assert.equal(good.state, 'succeeded', good.error);
    assert.equal(await readFile(join(out, 'note.txt'), 'utf8'), note);
  });

  it('cancels an extraction promptly, leaving no partial file under a final name', async () => {
    // A larger, slower archive: 20 MB of random data through bzip2 (about 1 s to decompress).
    const big = await mkdtemp(join(tmpdir(), 'ferry-arc-big-'));
    try {
      await writeRandomFile(join(big, 'huge.bin'), 20 * 1024 * 1024);
      run('tar', ['-cjf', join(files, 'arc', 'huge.tar.bz2'), '-C', big, 'huge.bin']);
      const [task] = await decompress({ name: ['huge.tar.bz2'], dst_dir: '/local/canceled' });
      assert.ok(task);
      await waitFor(
        async () => ((await info('decompress', task.id)).processed_bytes > 0 ? true : undefined),
        20_000,
        'bytes moving',
      );
      const t0 = Date.now();
      const res = await h.json('POST', `/api/task/decompress/cancel?tid=${task.id}`, { token: h.adminToken });
      assert.equal(res.code, 200, res.message);
      const done = await finished('decompress', task.id);
      const took = Date.now() - t0;
      console.log(`# cancel took ${took} ms`);
      assert.equal(done.state, 'canceled', done.error);
      assert.ok(took < 3000, `cancel took ${took} ms`);
      const left = await snapshotTree(join(files, 'canceled')).catch(() => new Map());
      assert.deepEqual([...left.keys()], [], 'a partial file was left');
      const procs = spawnSync('pgrep', ['-P', String(process.pid), 'bzip2'], {
        encoding: 'utf8',
      }).stdout.trim();
      assert.equal(procs, '', 'the bzip2 child was not killed');
    } finally {
      await rm(big, { recursive: true, force: true });
    }
  });

  it('deleting a decompress_upload task that never ran frees its temp tree', async () => {
    // A second server whose upload workers are off, so the handed-over tree waits.
    const h2 = await startHarness({ tasks: { workers: { decompress_upload: 0 } } });
    try {
      await mountWebDav(h2, dav);
      await mkdir(join(h2.dataDir, 'files', 'arc'), { recursive: true });
      await cp(join(files, 'arc', 'tree.zip'), join(h2.dataDir, 'files', 'arc', 'tree.zip'));
      const created = await h2.json<{ tasks: TaskView[] }>('POST', '/api/fs/archive/decompress', {
        token: h2.adminToken,
        body: { src_dir: '/local/arc', name: ['tree.zip'], dst_dir: '/dav/never' },
      });
      assert.equal(created.code, 200, created.message);
      const id = created.data.tasks[0]?.id ?? '';
      const area = join(h2.dataDir, 'decompress', `${id}-upload`);
      await waitFor(
        async () => ((await snapshotTree(area).catch(() => null))?.size ? true : undefined),
        20_000,
        'handed-over tree',
      );
      assert.deepEqual(diffSnapshots(await snapshotTree(area), expected), []);
      const del = await h2.json('POST', `/api/task/decompress_upload/delete?tid=${id}-upload`, {
        token: h2.adminToken,
      });
      assert.equal(del.code, 200, del.message);
      await waitFor(
        async () => ((await readdir(join(h2.dataDir, 'decompress'))).length === 0 ? true : undefined),
        5000,
        'temp tree removed',
      );
    } finally {
      await h2.close();
    }
  });

  it('needs the decompress permission; a user without it is refused', async () => {
    const token = await h.user('no-archives');
    const res = await h.json('POST', '/api/fs/archive/decompress', {
      token,
      body: { src_dir: '/local/arc', name: ['tree.zip'], dst_dir: '/local/x' },
    });
    assert.equal(res.code, 403);
    const list = await h.json('POST', '/api/fs/archive/list', {
      token,
      body: { path: '/local/arc/tree.zip' },
    });
    assert.equal(list.code, 403);
  });
});

/** A password other than the right one that passes the one-byte check of the entry `name`. */
async function passingWrongPassword(zip: string, name: string): Promise<string> {
  const reader = new ZipReader(new Uint8ArrayReader(await readFile(zip)));
  const entry = (await reader.getEntries()).find((e): e is FileEntry => e.filename === name && !e.directory);
  assert.ok(entry?.zipCrypto, `${zip} holds ${name}, encrypted with ZipCrypto`);
  for (let i = 0; i < 100_000; i++) {
    const candidate = `wrong-${i}`;
    const passes = await entry
      .getData(new TextWriter(), { password: candidate, checkPasswordOnly: true })
      .then(
        () => true,
        () => false,
      );
    if (passes) return candidate;
  }
  throw new Error(`no wrong password passes the check of ${name} in ${zip}`);
}
