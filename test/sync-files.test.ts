import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type FerryProcess, spawnFerry } from './helpers/process.ts';
import { requireTools, runs } from './helpers/tools.ts';
import { sha256File, writeRandomFile } from './helpers/tree.ts';

/**
 * `syncFiles` decides whether a task's files reach the disk before it succeeds. Which files a real
 * `ferry serve` flushes is read off its system calls: strace follows the server (and the `cp` it
 * starts) and records every fsync, fdatasync and syncfs with the path it applies to.
 */

const PASSWORD = 'sync-files-password';
const MiB = 1024 * 1024;
const FLUSH_CALL = /\b(?:fsync|fdatasync|syncfs)\(\d+<([^>]*)>/;

describe('syncFiles: what a task flushes to disk before it succeeds', () => {
  const ready = requireTools('the syncFiles tests', runs('strace', ['-V']) ? [] : ['strace']);
  let web: Server;
  let url = '';
  const body = randomBytes(3 * MiB);
  const cleanups: (() => Promise<unknown>)[] = [];

  before(async () => {
    web = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
      res.end(body);
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(web.address() as AddressInfo).port}/download.bin`;
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await new Promise((r) => web.close(r));
  });

  /**
   * Copy a tree (small files, a 2 MiB one, and one of 130 MiB, which `cp` copies), copy one small
   * file, extract a tar, download a URL with SimpleHttp and move a tree to another mount, all
   * under strace;
   * returns the paths every flush call named, and the data directory.
   */
  async function runTasks(syncFiles: string): Promise<{ flushed: string[]; dataDir: string }> {
    const dataDir = await realpath(await mkdtemp(join(tmpdir(), 'ferry-sync-files-')));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const files = join(dataDir, 'files');
    await mkdir(join(files, 'tree'), { recursive: true });
    await mkdir(join(files, 'moving'), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(files, 'tree', `small-${i}.txt`), `small file ${i}\n`);
    const midHash = await writeRandomFile(join(files, 'tree', 'mid.bin'), 2 * MiB);
    const bigHash = await writeRandomFile(join(files, 'tree', 'big.bin'), 130 * MiB);
    await writeFile(join(files, 'one.txt'), 'one small file\n');
    await writeRandomFile(join(files, 'moving', 'moved.bin'), MiB);
    for (let i = 0; i < 3; i++) await writeFile(join(files, 'moving', `m-${i}.txt`), `moved ${i}\n`);
    const pack = join(dataDir, 'pack');
    await mkdir(pack);
    for (let i = 0; i < 3; i++) await writeFile(join(pack, `packed-${i}.txt`), `packed ${i}\n`);
    await mkdir(join(files, 'arc'));
    execFileSync('tar', ['-cf', join(files, 'arc', 'packed.tar'), '-C', pack, '.']);

    const server = await spawnFerry(dataDir, { FERRY_ADMIN_PASSWORD: PASSWORD, FERRY_SYNC_FILES: syncFiles });
    cleanups.push(() => server.kill9());
    const trace = join(dataDir, 'strace.txt');
    const tracer = await attachStrace(server.pid, trace);
    cleanups.push(async () => tracer.kill('SIGKILL'));
    try {
      const token = await login(server);
      const ids: [string, string][] = [];
      const created = async (type: string, path: string, request: unknown) => {
        const res = await server.api<{ tasks: { id: string }[] }>('POST', path, { token, body: request });
        assert.equal(res.code, 200, `${path}: ${res.message}`);
        for (const task of res.data.tasks) ids.push([type, task.id]);
      };
      await created('copy', '/api/fs/copy', { src_dir: '/local', dst_dir: '/local/copy', names: ['tree'] });
      await created('copy', '/api/fs/copy', {
        src_dir: '/local',
        dst_dir: '/local/copy1',
        names: ['one.txt'],
      });
      // A move within one mount is a rename: this one goes to a second mount, file by file.
      const mount = await server.api('POST', '/api/admin/storage/create', {
        token,
        body: {
          mount_path: '/other',
          driver: 'Local',
          addition: JSON.stringify({ root_folder_path: join(dataDir, 'other') }),
        },
      });
      assert.equal(mount.code, 200, `storage/create: ${mount.message}`);
      await created('move', '/api/fs/move', {
        src_dir: '/local',
        dst_dir: '/other/moved',
        names: ['moving'],
      });
      await created('decompress', '/api/fs/archive/decompress', {
        src_dir: '/local/arc',
        name: ['packed.tar'],
        dst_dir: '/local/unpacked',
        overwrite: false,
        put_into_new_dir: false,
        inner_path: '/',
      });
      await created('offline_download', '/api/fs/add_offline_download', {
        urls: [url],
        path: '/local/dl',
        tool: 'SimpleHttp',
        delete_policy: 'delete_on_upload_succeed',
      });
      for (const [type, id] of ids) {
        const task = await server.finished(token, type, id, 60_000);
        assert.equal(task.state, 'succeeded', `${type} ${id}: ${task.error}`);
      }
      const download = ids.find(([type]) => type === 'offline_download')?.[1];
      const transfer = await server.finished(token, 'offline_download_transfer', `${download}-t0`, 60_000);
      assert.equal(transfer.state, 'succeeded', `transfer: ${transfer.error}`);
    } finally {
      await detach(tracer);
    }
    // The copies are whole, whatever was flushed.
    assert.equal(await sha256File(join(files, 'copy', 'tree', 'big.bin')), bigHash);
    assert.equal(await sha256File(join(files, 'copy', 'tree', 'mid.bin')), midHash);
    assert.equal(await readFile(join(files, 'copy1', 'one.txt'), 'utf8'), 'one small file\n');
    assert.deepEqual(await readFile(join(files, 'dl', 'download.bin')), body);
    assert.equal(await readFile(join(files, 'unpacked', 'packed-2.txt'), 'utf8'), 'packed 2\n');
    const flushed: string[] = [];
    for (const line of (await readFile(trace, 'utf8')).split('\n')) {
      const path = FLUSH_CALL.exec(line)?.[1];
      if (path !== undefined) flushed.push(path);
    }
    return { flushed, dataDir };
  }

  const under = (paths: string[], dir: string) => paths.filter((p) => p === dir || p.startsWith(`${dir}/`));

  it('by default every file a task writes is flushed: copies, downloads, extractions and moves', {
    skip: !ready,
    timeout: 180_000,
  }, async () => {
    const { flushed, dataDir } = await runTasks('true');
    for (const dir of ['files/copy/tree', 'files/copy1', 'offline', 'files/unpacked', 'other/moved']) {
      assert.ok(under(flushed, join(dataDir, dir)).length > 0, `nothing under ${dir} was flushed`);
    }
    // mid.bin and big.bin (copied by cp) were each fsynced under its temp name before taking its
    // name; the small files by a syncfs of their folder.
    const tree = join(dataDir, 'files/copy/tree');
    const temps = new Set(under(flushed, tree).filter((p) => p.startsWith(`${tree}/.ferry-tmp-`)));
    assert.equal(temps.size, 2, `flushed under copy/tree: ${under(flushed, tree).join(', ')}`);
    assert.ok(flushed.includes(tree), 'the small files were not flushed');
  });

  it('with FERRY_SYNC_FILES=false copies, downloads and extractions are left to the OS, a move still flushes', {
    skip: !ready,
    timeout: 180_000,
  }, async () => {
    const { flushed, dataDir } = await runTasks('false');
    for (const dir of ['files/copy', 'files/copy1', 'offline', 'files/dl', 'files/unpacked']) {
      assert.deepEqual(under(flushed, join(dataDir, dir)), [], `flushed under ${dir}`);
    }
    // A move deletes its source: its copy reaches the disk first whatever syncFiles says.
    assert.ok(under(flushed, join(dataDir, 'other/moved')).length > 0, 'the move flushed nothing');
  });

  it('refuses a FERRY_SYNC_FILES that is not true or false, naming it', { skip: !ready }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ferry-sync-files-bad-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    await assert.rejects(
      spawnFerry(dataDir, { FERRY_ADMIN_PASSWORD: PASSWORD, FERRY_SYNC_FILES: 'sometimes' }),
      /FERRY_SYNC_FILES must be true or false/,
    );
  });
});

async function login(server: FerryProcess): Promise<string> {
  const res = await server.api<{ token: string }>('POST', '/api/auth/login', {
    body: { username: 'admin', password: PASSWORD },
  });
  assert.equal(res.code, 200, `login: ${res.message}`);
  return res.data.token;
}

/** strace attached to `pid` and the threads and children it has or starts; resolves once attached. */
async function attachStrace(pid: number, out: string): Promise<ChildProcess> {
  const tracer = spawn(
    'strace',
    ['-f', '-y', '-e', 'trace=fsync,fdatasync,syncfs', '-o', out, '-p', String(pid)],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    tracer.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // "Process <pid> attached with <n> threads": printed once every thread is attached.
      if (stderr.includes(`Process ${pid} attached`)) resolve();
    });
    tracer.once('exit', (code) => reject(new Error(`strace exited (${code}): ${stderr}`)));
  });
  return tracer;
}

/** Stop tracing (strace detaches on SIGINT) and wait until it has written everything. */
async function detach(tracer: ChildProcess): Promise<void> {
  if (tracer.exitCode !== null || tracer.signalCode !== null) return;
  const exited = new Promise((r) => tracer.once('exit', r));
  tracer.kill('SIGINT');
  await exited;
}
