import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bencode from 'bencode';
import { Aria2RpcError } from '../src/download/aria2.ts';
import { type FtpServer, ftpServerAvailable, startFtpServer } from './helpers/ftp-server.ts';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { requireTools, runs } from './helpers/tools.ts';
import { exists, sha256File } from './helpers/tree.ts';

/**
 * aria2's sources besides HTTP, end to end on loopback with real servers: FTP with a user and
 * password (Debian's pyftpdlib), a `.torrent` URL whose payload comes from a web seed (BEP 19:
 * the torrent's `url-list` points at this test's HTTP server, so no tracker or peer is needed),
 * and a magnet link that can never resolve (no peers), which must still stop at once on cancel.
 */

const enabled =
  requireTools('the aria2 source tests', runs('aria2c') ? [] : ['aria2']) && ftpServerAvailable();

/** Bytes per torrent piece: small, so the payload spans many pieces and crosses a file boundary inside one. */
const PIECE_BYTES = 64 * 1024;

/** A multi-file torrent of the folder `name` (files in the order given), web-seeded from `seedUrl`. */
async function makeTorrent(root: string, name: string, files: string[][], seedUrl: string): Promise<Buffer> {
  const contents = await Promise.all(files.map((f) => readFile(join(root, name, ...f))));
  const all = Buffer.concat(contents);
  const pieces: Buffer[] = [];
  for (let at = 0; at < all.length; at += PIECE_BYTES)
    pieces.push(
      createHash('sha1')
        .update(all.subarray(at, at + PIECE_BYTES))
        .digest(),
    );
  return Buffer.from(
    bencode.encode({
      info: {
        name,
        'piece length': PIECE_BYTES,
        pieces: Buffer.concat(pieces),
        files: files.map((path, i) => ({ length: contents[i]?.length ?? 0, path })),
      },
      'url-list': [seedUrl],
    }),
  );
}

describe('offline download through aria2: FTP, torrent, magnet', { skip: !enabled }, () => {
  let h: Harness;
  let root: string;
  let ftp: FtpServer;
  let web: Server;
  let base = '';
  /** Paths (with their Range header) the HTTP server was asked for. */
  const requested: { path: string; range: string | undefined }[] = [];
  const torrents = new Map<string, Buffer>();

  const start = async (url: string, path: string) => {
    const res = await h.json<{ tasks: { id: string; name: string }[] }>(
      'POST',
      '/api/fs/add_offline_download',
      {
        token: h.adminToken,
        body: { urls: [url], path, tool: 'aria2' },
      },
    );
    assert.equal(res.code, 200, res.message);
    return res.data.tasks[0] as { id: string; name: string };
  };

  before(async () => {
    h = await startHarness();
    root = await mkdtemp(join(tmpdir(), 'ferry-aria2-sources-'));
    ftp = await startFtpServer(root);
    // The web seed: files under `root` with byte ranges (aria2 asks for pieces), and the torrents.
    web = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      requested.push({ path, range: req.headers.range });
      const torrent = torrents.get(path);
      if (torrent) {
        res.writeHead(200, { 'content-type': 'application/x-bittorrent' }).end(torrent);
        return;
      }
      const file = join(root, path.replace(/^\/seed\//, '/'));
      stat(file).then(
        (st) => {
          const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
          const [from, to] = m ? [Number(m[1]), m[2] ? Number(m[2]) : st.size - 1] : [0, st.size - 1];
          res.writeHead(m ? 206 : 200, {
            'content-length': to - from + 1,
            'accept-ranges': 'bytes',
            ...(m && { 'content-range': `bytes ${from}-${to}/${st.size}` }),
          });
          createReadStream(file, { start: from, end: to }).pipe(res);
        },
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
  });

  after(async () => {
    await h?.close();
    await ftp?.close();
    web?.closeAllConnections();
    await new Promise((resolve) => web?.close(resolve));
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('FTP with a user and password: the file lands byte-identical under its decoded name', async () => {
    await mkdir(join(root, 'pub'), { recursive: true });
    const data = randomBytes(5 * 1024 * 1024 + 3);
    await writeFile(join(root, 'pub', 'report 2026.bin'), data);
    const url = `ftp://${ftp.username}:${ftp.password}@127.0.0.1:${ftp.port}/pub/report%202026.bin`;
    const task = await start(url, '/local/ftp');
    assert.ok(!task.name.includes(ftp.password), `the task name shows no password: ${task.name}`);
    const dl = await h.finished('offline_download', task.id);
    assert.equal(dl.state, 'succeeded', dl.error);
    assert.equal(dl.processed_bytes, data.length);
    const tr = await h.finished('offline_download_transfer', `${task.id}-t0`);
    assert.equal(tr.state, 'succeeded', tr.error);
    const landed = await readFile(join(h.dataDir, 'files', 'ftp', 'report 2026.bin'));
    assert.ok(landed.equals(data), 'byte-identical');
    assert.ok(!(await exists(join(h.dataDir, 'offline', task.id))), 'the download area is gone');
  });

  it('FTP with a wrong password fails at once with a clear error, no retries', async () => {
    // Right after the good login above, on purpose: aria2 would reuse that logged-in connection
    // (its pool is keyed by host and user, not password) unless ferry turns the reuse off.
    const task = await start(
      `ftp://${ftp.username}:not-the-password-7f3a@127.0.0.1:${ftp.port}/pub/report%202026.bin`,
      '/local/x',
    );
    const dl = await h.finished('offline_download', task.id);
    assert.equal(dl.state, 'failed');
    assert.match(dl.error, /refused the login \(530\): wrong user or password/);
    assert.ok(!dl.error.includes('7f3a'), `the error does not repeat the password: ${dl.error}`);
    assert.equal(dl.retries, 1, 'a login that failed is not retried');
  });

  it('a .torrent URL: aria2 follows it, the web seed serves the payload, every file of the folder lands', async () => {
    const files = [['a.bin'], ['sub', 'b.bin'], ['sub', 'empty.txt'], ['c d.bin']];
    const sizes = [3 * 1024 * 1024 + 17, 700_001, 0, 150_000];
    for (const [i, f] of files.entries()) {
      await mkdir(join(root, 'pack', ...f.slice(0, -1)), { recursive: true });
      await writeFile(join(root, 'pack', ...f), randomBytes(sizes[i] ?? 0));
    }
    torrents.set('/pack.torrent', await makeTorrent(root, 'pack', files, `${base}/seed/`));
    const task = await start(`${base}/pack.torrent`, '/local/bt');
    const dl = await h.finished('offline_download', task.id);
    assert.equal(dl.state, 'succeeded', dl.error);
    const payload = sizes.reduce((a, b) => a + b, 0);
    assert.equal(dl.total_bytes, payload, 'the total is the payload’s, not the .torrent’s');
    assert.equal(dl.processed_bytes, payload);
    assert.equal(dl.progress, 100);
    // One item, the torrent's folder: one transfer task.
    const tr = await h.finished('offline_download_transfer', `${task.id}-t0`);
    assert.equal(tr.state, 'succeeded', tr.error);
    assert.equal(await h.task('offline_download_transfer', `${task.id}-t1`), undefined);
    for (const f of files)
      assert.equal(
        await sha256File(join(h.dataDir, 'files', 'bt', 'pack', ...f)),
        await sha256File(join(root, 'pack', ...f)),
        f.join('/'),
      );
    assert.ok(
      requested.some((r) => r.path === '/seed/pack/a.bin'),
      `the payload came from the web seed: ${JSON.stringify(requested)}`,
    );
    assert.ok(!(await exists(join(h.dataDir, 'offline', task.id))), 'the download area is gone');
  });

  it('a magnet link no peer can serve waits for its metadata; cancel stops it within 1 s and aria2 forgets it', async () => {
    const magnet = `magnet:?xt=urn:btih:${randomBytes(20).toString('hex')}&dn=nobody%20has%20this`;
    const task = await start(magnet, '/local/mag');
    assert.match(task.name, /^download nobody has this to \(\/local\/mag\)$/);
    const admin = { id: 1, username: 'admin', role: 2, basePath: '/', permission: 0 };
    const gid = await waitFor(
      async () => {
        const t = await h.core.tasks.get(admin, task.id);
        return typeof t.payload.gid === 'string' ? t.payload.gid : undefined;
      },
      10_000,
      'aria2 to take the magnet',
    );
    const aria2 = await h.core.offline.aria2();
    assert.equal((await aria2.tellStatus(gid)).status, 'active', 'looking for the metadata');
    const running = await h.task('offline_download', task.id);
    assert.equal(running?.state, 'running');
    const asked = Date.now();
    const res = await h.json('POST', `/api/task/offline_download/cancel?tid=${task.id}`, {
      token: h.adminToken,
    });
    assert.equal(res.code, 200, res.message);
    const ended = await h.finished('offline_download', task.id, 5000);
    const took = Date.now() - asked;
    assert.equal(ended.state, 'canceled');
    assert.ok(took < 1000, `canceled after ${took} ms`);
    await assert.rejects(aria2.tellStatus(gid), Aria2RpcError, 'aria2 no longer knows the gid');
    const active = await aria2.call<{ gid: string }[]>('aria2.tellActive', [['gid']]);
    assert.deepEqual(active, [], 'aria2 runs nothing for ferry any more');
    assert.ok(!(await exists(join(h.dataDir, 'offline', task.id))), 'the download area is gone');
  });

  it('a magnet no peer serves fails once bt-stop-timeout passes, at once and clearly, and aria2 forgets it', async () => {
    // A server of its own (and its own aria2c) with a 2 s bt-stop-timeout instead of 10 minutes.
    const h2 = await startHarness({ offlineDownload: { aria2: { options: { 'bt-stop-timeout': '2' } } } });
    try {
      const res = await h2.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
        token: h2.adminToken,
        body: {
          urls: [`magnet:?xt=urn:btih:${randomBytes(20).toString('hex')}&dn=dead`],
          path: '/local/d',
          tool: 'aria2',
        },
      });
      assert.equal(res.code, 200, res.message);
      const id = res.data.tasks[0]?.id as string;
      const failed = await h2.finished('offline_download', id, 20_000);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error, /no peer sent any data for 2 s \(bt-stop-timeout\)/);
      assert.equal(failed.retries, 1, 'not retried: the next attempt would wait as long for nothing');
      const aria2 = await h2.core.offline.aria2();
      assert.deepEqual(await aria2.call('aria2.tellActive', [['gid']]), []);
      assert.deepEqual(
        await aria2.call('aria2.tellStopped', [0, 10, ['gid']]),
        [],
        'its result is removed too',
      );
    } finally {
      await h2.close();
    }
  });
});
