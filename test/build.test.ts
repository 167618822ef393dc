/**
 * What `npm start` runs: the bundle `npm run build` makes (scripts/build.mjs), not the sources
 * under tsx that every other test runs. A bundler can break code that works from the sources (a
 * worker thread's module that must be an entry point of its own, a dependency that finds its
 * files at run time, a chunk loaded on demand), so this test builds the bundle and drives it
 * through the paths that load code on demand: the small-file threads, the S3, WebDAV and SFTP
 * drivers (ssh2 and better-sqlite3 stay outside the bundle), the zip and tar readers and the
 * SimpleHttp downloader.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ADMIN_PASSWORD, type TaskView } from './helpers/harness.ts';
import { type FerryProcess, PROJECT_ROOT, spawnFerry } from './helpers/process.ts';
import { type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';
import { type S3Server, startS3Server } from './helpers/s3-server.ts';
import { requireTools, runs } from './helpers/tools.ts';
import { sha256 } from './helpers/tree.ts';

const run = promisify(execFile);

function toolsAvailable(): boolean {
  const missing = runs('zip', ['-v']) ? [] : ['zip'];
  return requireTools('the build test', missing) && rcloneAvailable();
}

describe('the server npm run build bundles', { skip: !toolsAvailable() }, () => {
  let buildDir: string;
  let entry: string;
  let dataDir: string;
  let ferry: FerryProcess;
  let token = '';
  let s3: S3Server;
  let dav: RcloneServer;
  let sftp: RcloneServer;
  let origin: Server;
  const payload = Buffer.alloc(3 << 20, 'ferry bundle ');

  const api = async <T>(path: string, body: unknown) => {
    const res = await ferry.api<T>('POST', path, { token, body });
    assert.equal(res.code, 200, `${path}: ${res.message}\n${ferry.output()}`);
    return res.data;
  };
  const succeeded = async (type: string, id: string) => {
    const t = await ferry.finished(token, type, id);
    assert.equal(t.state, 'succeeded', `${type} ${t.name}: ${t.error}\n${ferry.output()}`);
  };
  const copy = async (srcDir: string, dstDir: string, names: string[]) => {
    const { tasks } = await api<{ tasks: TaskView[] }>('/api/fs/copy', {
      src_dir: srcDir,
      dst_dir: dstDir,
      names,
    });
    for (const t of tasks) await succeeded('copy', t.id);
  };
  const files = (...parts: string[]) => join(dataDir, 'files', ...parts);

  before(async () => {
    // Inside node_modules, so the bundle finds the packages left outside it, as dist/ does.
    await mkdir(join(PROJECT_ROOT, 'node_modules', '.cache'), { recursive: true });
    buildDir = await mkdtemp(join(PROJECT_ROOT, 'node_modules', '.cache', 'ferry-build-'));
    await run(process.execPath, [join(PROJECT_ROOT, 'scripts', 'build.mjs'), buildDir], { timeout: 120_000 });
    entry = join(buildDir, 'cli.js');
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-build-data-'));
    [s3, dav, sftp] = await Promise.all([startS3Server(), startRclone('webdav'), startRclone('sftp')]);
    origin = createServer((_req, res) =>
      res.writeHead(200, { 'content-length': payload.length }).end(payload),
    );
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    ferry = await spawnFerry(dataDir, { FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD }, { entry });
    const login = await ferry.api<{ token: string }>('POST', '/api/auth/login', {
      body: { username: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(login.code, 200, login.message);
    token = login.data.token;
  });

  after(async () => {
    await ferry?.stop();
    origin?.closeAllConnections();
    await new Promise((resolve) => origin?.close(resolve));
    await Promise.all([s3?.close(), dav?.close(), sftp?.close()]);
    if (buildDir) await rm(buildDir, { recursive: true, force: true });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('prints its usage', async () => {
    const { stdout } = await run(process.execPath, [entry, '--help']);
    assert.match(stdout, /ferry serve/);
  });

  it('serves the web UI, found in node_modules from the bundle too, and its files', async () => {
    const page = await fetch(`${ferry.base}/@login`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /"\/@openlist"/);
    const script = html.match(/"src":"(\/assets\/index-[\w-]+\.js)"/)?.[1];
    assert.ok(script, 'index.html names its entry script');
    const asset = await fetch(`${ferry.base}${script}`);
    assert.equal(asset.status, 200);
    assert.match(String(asset.headers.get('cache-control')), /immutable/);
    await asset.arrayBuffer();
  });

  it('copies small files through its small-file threads', async () => {
    await mkdir(files('small'), { recursive: true });
    const names = Array.from({ length: 20 }, (_, i) => `f${i}.txt`);
    for (const name of names) await writeFile(files('small', name), `content of ${name}`);
    await copy('/local', '/local/small-copy', ['small']);
    for (const name of names)
      assert.equal(await readFile(files('small-copy', 'small', name), 'utf8'), `content of ${name}`);
  });

  it('mounts S3, WebDAV and SFTP and copies a file through each and back', async () => {
    await writeFile(files('payload.bin'), payload);
    const mounts = {
      '/s3': {
        driver: 'S3',
        addition: {
          bucket: s3.bucket,
          endpoint: s3.endpoint,
          region: 'us-east-1',
          access_key_id: s3.accessKeyId,
          secret_access_key: s3.secretAccessKey,
          force_path_style: true,
        },
      },
      '/dav': {
        driver: 'WebDav',
        addition: { address: dav.address, username: dav.username, password: dav.password },
      },
      '/sftp': {
        driver: 'SFTP',
        addition: { address: sftp.address, username: sftp.username, password: sftp.password },
      },
    };
    for (const [mountPath, { driver, addition }] of Object.entries(mounts)) {
      await api('/api/admin/storage/create', {
        mount_path: mountPath,
        driver,
        addition: JSON.stringify(addition),
      });
      await copy('/local', mountPath, ['payload.bin']);
      await copy(mountPath, `/local/back${mountPath}`, ['payload.bin']);
      assert.equal(
        sha256(await readFile(files('back', mountPath.slice(1), 'payload.bin'))),
        sha256(payload),
        mountPath,
      );
    }
  });

  it('extracts a zip and a tar.gz', async () => {
    const src = await mkdtemp(join(tmpdir(), 'ferry-build-arc-'));
    try {
      await mkdir(join(src, 'tree', 'sub'), { recursive: true });
      await writeFile(join(src, 'tree', 'a.txt'), 'alpha');
      await writeFile(join(src, 'tree', 'sub', 'b.txt'), 'beta');
      await mkdir(files('arc'), { recursive: true });
      await run('zip', ['-q', '-r', files('arc', 'tree.zip'), 'tree'], { cwd: src });
      await run('tar', ['czf', files('arc', 'tree.tar.gz'), 'tree'], { cwd: src });
    } finally {
      await rm(src, { recursive: true, force: true });
    }
    for (const name of ['tree.zip', 'tree.tar.gz']) {
      const { tasks } = await api<{ tasks: TaskView[] }>('/api/fs/archive/decompress', {
        src_dir: '/local/arc',
        dst_dir: `/local/out-${name}`,
        name: [name],
        inner_path: '/',
        put_into_new_dir: false,
        overwrite: false,
      });
      for (const t of tasks) await succeeded('decompress', t.id);
      assert.equal(await readFile(files(`out-${name}`, 'tree', 'sub', 'b.txt'), 'utf8'), 'beta', name);
    }
  });

  it('downloads a URL with SimpleHttp', async () => {
    const { port } = origin.address() as { port: number };
    const { tasks } = await api<{ tasks: TaskView[] }>('/api/fs/add_offline_download', {
      urls: [`http://127.0.0.1:${port}/fetched.bin`],
      path: '/local/fetched',
      tool: 'SimpleHttp',
      delete_policy: 'delete_on_upload_succeed',
    });
    const [task] = tasks;
    assert.ok(task);
    await succeeded('offline_download', task.id);
    await succeeded('offline_download_transfer', `${task.id}-t0`);
    assert.equal(sha256(await readFile(files('fetched', 'fetched.bin'))), sha256(payload));
  });
});
