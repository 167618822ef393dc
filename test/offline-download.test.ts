import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/core.ts';
import { Aria2Daemon, Aria2RpcError } from '../src/download/aria2.ts';
import { ADMIN_PASSWORD, type Harness, isFinished, startHarness, waitFor } from './helpers/harness.ts';
import { mountS3, type S3Server, startS3Server } from './helpers/s3-server.ts';
import { requireTools, runs } from './helpers/tools.ts';
import { sha256File, writeRandomFile } from './helpers/tree.ts';

/**
 * Offline downloads end to end, with real tools on loopback: a node:http server the test
 * controls (ranges on/off, redirects, Content-Disposition, a connection cut half-way, a slow
 * trickle, 404), ferry's SimpleHttp, aria2c started by ferry itself, and s3rver as a non-Local
 * destination.
 */

const SIZE = Number(process.env.FERRY_TEST_DOWNLOAD_MB ?? 200) * 1024 * 1024;

interface Seen {
  path: string;
  range: string | undefined;
  ifRange: string | undefined;
  status: number;
}

/** The origin server: `/range/<name>` honours Range/If-Range, `/plain/<name>` ignores it. */
class Origin {
  server!: Server;
  seen: Seen[] = [];
  /** Cut the connection of the next request to `path` after this many body bytes. */
  cut = new Map<string, number>();
  /** Serve the next request to `path` at this many bytes per second. */
  throttle = new Map<string, number>();
  /** The representation's ETag; change it to say "the file changed". */
  etag = '"v1"';
  base = '';

  constructor(private readonly file: string) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  requests(path: string): Seen[] {
    return this.seen.filter((s) => s.path === path);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.base);
    const path = url.pathname;
    const record = (status: number) =>
      this.seen.push({
        path,
        range: req.headers.range,
        ifRange: req.headers['if-range'] as string | undefined,
        status,
      });
    const size = (await stat(this.file)).size;
    if (path.startsWith('/redirect')) {
      record(302);
      res.writeHead(302, { location: url.searchParams.get('to') ?? '/' }).end();
      return;
    }
    if (path === '/missing') {
      record(404);
      res.writeHead(404).end('no such file');
      return;
    }
    if (path === '/slow') {
      record(200);
      res.writeHead(200, { 'content-length': size, etag: '"slow"' });
      const timer = setInterval(() => res.write(Buffer.alloc(1024)), 50);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const ranges = path.startsWith('/range/') || path.startsWith('/cd/');
    const etag = this.etag;
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
    if (ranges) Object.assign(headers, { etag, 'accept-ranges': 'bytes' });
    if (path.startsWith('/cd/'))
      headers['content-disposition'] =
        `attachment; filename="fallback.bin"; filename*=UTF-8''r%C3%A9sum%C3%A9%20file.bin`;
    // Ranges as a server with ETags does them: `bytes=N-` or `bytes=N-M`, honoured unless If-Range no longer matches.
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    let [start, end] = [0, size - 1];
    if (ranges && m && (!ifRange || ifRange === etag) && Number(m[1]) < size) {
      start = Number(m[1]);
      if (m[2]) end = Math.min(end, Number(m[2]));
    }
    const status = m && (start > 0 || end < size - 1) ? 206 : 200;
    record(status);
    if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${size}`;
    headers['content-length'] = end - start + 1;
    res.writeHead(status, headers);
    const cutAt = this.cut.get(path);
    this.cut.delete(path);
    const rate = this.throttle.get(path);
    this.throttle.delete(path);
    let sent = 0;
    const cutter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        if (rate !== undefined) {
          sent += chunk.length;
          setTimeout(() => done(null, chunk), (chunk.length / rate) * 1000);
          return;
        }
        if (cutAt !== undefined && sent + chunk.length > cutAt) {
          done(null, chunk.subarray(0, cutAt - sent));
          // Let the bytes before the cut go out, then drop the connection mid-body.
          setImmediate(() => res.socket?.destroy());
          return;
        }
        sent += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(createReadStream(this.file, { start, end }), cutter, res).catch(() => undefined);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface TaskView {
  id: string;
  name: string;
  state: string;
  error: string;
  progress: number;
  retries: number;
  creator: string;
}

const enabledAria2 = requireTools('the aria2 tests', runs('aria2c') ? [] : ['aria2']);

describe('offline download', () => {
  let h: Harness;
  let origin: Origin;
  let s3: S3Server;
  let sha = '';
  let source = '';

  const info = async (type: string, id: string) =>
    (await h.json<TaskView[]>('POST', `/api/task/${type}/info?tid=${id}`, { token: h.adminToken })).data?.[0];

  const finished = (type: string, id: string, timeoutMs = 60_000) =>
    waitFor(
      async () => {
        const t = await info(type, id);
        return t && isFinished(t.state) ? t : undefined;
      },
      timeoutMs,
      `${type} ${id} to finish`,
      50,
    );

  const add = async (body: Record<string, unknown>, token = h.adminToken) =>
    h.json<{ tasks: TaskView[] }>('POST', '/api/fs/add_offline_download', { token, body });

  /** Add one download and return its task id (asserting the request was accepted). */
  const start = async (
    url: string,
    path: string,
    tool = 'SimpleHttp',
    extra: Record<string, unknown> = {},
  ) => {
    const res = await add({ urls: [url], path, tool, ...extra });
    assert.equal(res.code, 200, res.message);
    const task = res.data.tasks[0];
    assert.ok(task);
    return task;
  };

  /** The download, then its transfer, both succeeded; returns the transfer. */
  const bothSucceed = async (id: string) => {
    const dl = await finished('offline_download', id);
    assert.equal(dl.state, 'succeeded', dl.error);
    assert.equal(dl.progress, 100);
    const tr = await finished('offline_download_transfer', `${id}-t0`);
    assert.equal(tr.state, 'succeeded', tr.error);
    return { dl, tr };
  };

  const area = (id: string) => join(h.dataDir, 'offline', id);
  const gone = async (path: string) =>
    stat(path).then(
      () => false,
      () => true,
    );

  before(async () => {
    const t0 = Date.now();
    h = await startHarness({
      tasks: { retryBaseDelayMs: 200, retryMaxDelayMs: 1000 },
      offlineDownload: { aria2: { options: { split: '1', 'max-connection-per-server': '1' } } },
    });
    source = join(h.dataDir, 'source.bin');
    sha = await writeRandomFile(source, SIZE);
    origin = new Origin(source);
    await origin.start();
    s3 = await startS3Server();
    await mountS3(h, s3);
    process.stderr.write(`# setup (${SIZE / 1048576} MB source) took ${Date.now() - t0} ms\n`);
  });

  after(async () => {
    const pid = h?.core.offline.aria2Pid;
    await h?.close();
    await origin?.close();
    await s3?.close();
    if (pid !== undefined) assert.throws(() => process.kill(pid, 0), 'aria2c stopped with the core');
  });

  it('SimpleHttp: a connection cut half-way resumes with Range and lands byte-identical', async () => {
    origin.cut.set('/range/big.bin', Math.floor(SIZE / 2));
    const task = await start(`${origin.base}/range/big.bin`, '/local/dl');
    assert.equal(task.name, 'download big.bin to (/local/dl)');
    const { dl, tr } = await bothSucceed(task.id);
    assert.ok(dl.retries >= 1, 'the cut cost one attempt');
    const ranged = origin.requests('/range/big.bin').filter((s) => s.range);
    assert.ok(ranged.length >= 1, 'the retry asked for a range');
    const from = Number(/^bytes=(\d+)-$/.exec(ranged[0]?.range ?? '')?.[1]);
    assert.ok(from > 0 && from <= SIZE / 2, `resumed from byte ${from}`);
    assert.equal(ranged[0]?.ifRange, '"v1"', 'the resume is conditional on the ETag');
    assert.equal(ranged[0]?.status, 206);
    const partial = join(area(task.id), 'done', 'big.bin');
    assert.equal(tr.name, `transfer [](${partial}) to [/local](/dl)`);
    assert.equal(tr.creator, 'admin');
    assert.equal(await sha256File(join(h.dataDir, 'files', 'dl', 'big.bin')), sha);
    assert.ok(await gone(area(task.id)), 'delete_on_upload_succeed removed the download');
  });

  it('SimpleHttp: when the file changed between attempts (ETag), the If-Range resume gets 200 and starts over', async () => {
    origin.cut.set('/range/changed.bin', Math.floor(SIZE / 4));
    const task = await start(`${origin.base}/range/changed.bin`, '/local/changed');
    await waitFor(async () => (origin.requests('/range/changed.bin').length >= 1 ? true : undefined), 10_000);
    origin.etag = '"v2"';
    try {
      const { dl } = await bothSucceed(task.id);
      assert.ok(dl.retries >= 1);
    } finally {
      origin.etag = '"v1"';
    }
    const retry = origin.requests('/range/changed.bin')[1];
    assert.equal(retry?.ifRange, '"v1"', 'the retry asked for the old version');
    assert.equal(retry?.status, 200, 'the server sent the whole new version');
    assert.equal(await sha256File(join(h.dataDir, 'files', 'changed', 'changed.bin')), sha);
  });

  it('SimpleHttp: a server without ranges is fetched again from the start after a cut', async () => {
    origin.cut.set('/plain/big.bin', Math.floor(SIZE / 3));
    const task = await start(`${origin.base}/plain/big.bin`, '/local/plain');
    const { dl } = await bothSucceed(task.id);
    assert.ok(dl.retries >= 1);
    // No validators were offered, so nothing was resumed: every request was a full GET.
    assert.ok(origin.requests('/plain/big.bin').every((s) => !s.range && s.status === 200));
    assert.equal(await sha256File(join(h.dataDir, 'files', 'plain', 'big.bin')), sha);
  });

  it('SimpleHttp: follows a redirect and names the file from Content-Disposition (filename*)', async () => {
    // As a general user: the transfer is theirs too, and visible to them.
    const user = await h.user('downloader');
    const res = await add(
      { urls: [`${origin.base}/redirect/go?to=/cd/ignored.bin`], path: '/local/cd' },
      user,
    );
    assert.equal(res.code, 200, res.message);
    const task = res.data.tasks[0] as TaskView;
    assert.equal(task.name, 'download go to (/local/cd)');
    const { tr } = await bothSucceed(task.id);
    assert.equal(tr.creator, 'downloader');
    const mine = await h.json<TaskView[]>('POST', `/api/task/offline_download_transfer/info?tid=${tr.id}`, {
      token: user,
    });
    assert.equal(mine.code, 200, mine.message);
    assert.equal(await sha256File(join(h.dataDir, 'files', 'cd', 'résumé file.bin')), sha);
  });

  it('SimpleHttp: cancel of a slow download → canceled within 1 s, temp files gone', async () => {
    const task = await start(`${origin.base}/slow`, '/local/slow');
    // While it runs, the task reports bytes, the total, a speed and an ETA.
    const running = await waitFor(
      async () => {
        const t = (
          await h.json<
            (TaskView & { processed_bytes: number; total_bytes: number; speed: number; eta: number })[]
          >('POST', `/api/task/offline_download/info?tid=${task.id}`, { token: h.adminToken })
        ).data[0];
        return t && t.processed_bytes > 0 && t.speed > 0 && t.eta > 0 ? t : undefined;
      },
      10_000,
      'progress with a speed',
    );
    assert.equal(running.state, 'running');
    assert.equal(running.total_bytes, SIZE);
    assert.ok(running.progress < 100);
    const asked = Date.now();
    const res = await h.json('POST', `/api/task/offline_download/cancel?tid=${task.id}`, {
      token: h.adminToken,
    });
    assert.equal(res.code, 200, res.message);
    const ended = await finished('offline_download', task.id, 5000);
    const took = Date.now() - asked;
    assert.equal(ended.state, 'canceled');
    process.stderr.write(`# SimpleHttp cancel took ${took} ms\n`);
    assert.ok(took < 1000, `canceled after ${took} ms`);
    assert.ok(await gone(area(task.id)), 'the partial download is removed');
    assert.ok(await gone(join(h.dataDir, 'files', 'slow')), 'nothing at the destination');
  });

  it('SimpleHttp: a retry after a cancel starts over (the cancel freed the partial file) and succeeds', async () => {
    origin.throttle.set('/range/again.bin', 8 * 1024 * 1024);
    const task = await start(`${origin.base}/range/again.bin`, '/local/again');
    await waitFor(
      async () =>
        ((await stat(join(area(task.id), 'partial')).catch(() => null))?.size ?? 0) > 1024 * 1024 ||
        undefined,
      10_000,
      'a first MiB',
    );
    await h.json('POST', `/api/task/offline_download/cancel?tid=${task.id}`, { token: h.adminToken });
    assert.equal((await finished('offline_download', task.id, 5000)).state, 'canceled');
    assert.ok(await gone(area(task.id)));
    const retry = await h.json('POST', `/api/task/offline_download/retry?tid=${task.id}`, {
      token: h.adminToken,
    });
    assert.equal(retry.code, 200, retry.message);
    await bothSucceed(task.id);
    assert.ok(
      origin.requests('/range/again.bin').every((r) => !r.range),
      'no range: nothing was kept',
    );
    assert.equal(await sha256File(join(h.dataDir, 'files', 'again', 'again.bin')), sha);
  });

  it('a size limit (offlineDownload.maxBytes) fails the download at once with a clear message', async () => {
    const small = await startHarness({ offlineDownload: { maxBytes: 1024 * 1024 } });
    try {
      const res = await small.json<{ tasks: TaskView[] }>('POST', '/api/fs/add_offline_download', {
        token: small.adminToken,
        body: {
          urls: [`${origin.base}/range/limit.bin`, `${origin.base}/plain/limit.bin`],
          path: '/local/limit',
        },
      });
      assert.equal(res.code, 200, res.message);
      for (const { id } of res.data.tasks) {
        const t = await waitFor(
          async () => {
            const r = await small.json<TaskView[]>('POST', `/api/task/offline_download/info?tid=${id}`, {
              token: small.adminToken,
            });
            return r.data[0] && ['failed', 'succeeded'].includes(r.data[0].state) ? r.data[0] : undefined;
          },
          10_000,
          'the oversized download',
        );
        assert.equal(t.state, 'failed');
        assert.match(t.error, /over offlineDownload\.maxBytes \(1048576\)/);
        assert.equal(t.retries, 1);
      }
      // Streamed to the destination: refused the same way, and nothing arrives there.
      const streamed = await small.json<{ tasks: TaskView[] }>('POST', '/api/fs/add_offline_download', {
        token: small.adminToken,
        body: {
          urls: [`${origin.base}/range/limit.bin`],
          path: '/local/limit-stream',
          delete_policy: 'upload_download_stream',
        },
      });
      assert.equal(streamed.code, 200, streamed.message);
      const t = await small.finished('offline_download', streamed.data.tasks[0]?.id ?? '', 10_000);
      assert.equal(t.state, 'failed');
      assert.match(t.error, /over offlineDownload\.maxBytes \(1048576\)/);
      assert.ok(await gone(join(small.dataDir, 'files', 'limit-stream', 'limit.bin')));
    } finally {
      await small.close();
    }
  });

  it('bad input: refused with a clear message, or a task that fails clearly; never a 500', async () => {
    const refused = [
      [{ urls: ['file:///etc/passwd'], path: '/local' }, 400, /unsupported URL scheme file:/],
      [{ urls: ['gopher://example.com/'], path: '/local' }, 400, /unsupported URL scheme/],
      [{ urls: ['not a url'], path: '/local' }, 400, /not a URL/],
      [{ urls: ['ftp://example.com/a'], path: '/local', tool: 'SimpleHttp' }, 400, /use aria2/],
      [
        { urls: ['http://169.254.169.254/latest/meta-data'], path: '/local' },
        403,
        /169\.254\.169\.254 is blocked/,
      ],
      [{ urls: ['http://[::ffff:169.254.169.254]/'], path: '/local' }, 403, /is blocked/],
      [{ urls: ['http://100.100.100.200/'], path: '/local' }, 403, /is blocked/],
      [{ urls: ['http://metadata.google.internal/'], path: '/local' }, 403, /is blocked/],
      [{ urls: [], path: '/local' }, 400, /non-empty/],
      [{ urls: ['http://a/'], path: '/local', tool: 'qBittorrent' }, 400, /unknown offline download tool/],
      [{ urls: ['http://a/'], path: '/local', delete_policy: 'sometimes' }, 400, /delete_policy/],
      [{ urls: ['http://a/'], path: '/../etc' }, 403, /\.\./],
      [{ urls: ['http://a/'], path: '/nowhere' }, 404, /storage/],
    ] as const;
    for (const [body, code, message] of refused) {
      const res = await add(body);
      assert.equal(res.code, code, `${JSON.stringify(body)}: ${res.message}`);
      assert.match(res.message, message);
    }
    // A guest and a user without the permission are refused.
    const plain = await h.user('nodl', { permission: 0xfc & ~(1 << 2) });
    assert.equal((await add({ urls: [`${origin.base}/range/big.bin`], path: '/local' }, plain)).code, 403);
    const guest = await h.user('visitor', { role: 1 });
    const asGuest = await add({ urls: [`${origin.base}/range/big.bin`], path: '/local' }, guest);
    assert.deepEqual(asGuest, { code: 403, message: 'You are a guest', data: null });

    // 404: the task fails at once (no retries) with the status in its error.
    const missing = await start(`${origin.base}/missing`, '/local/x');
    const failed = await finished('offline_download', missing.id);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.retries, 1, 'one attempt, no retry');
    assert.match(failed.error, /HTTP 404/);
    assert.ok(!(await gone(area(missing.id))), 'a failed download keeps its area until deleted');
    const del = await h.json('POST', `/api/task/offline_download/delete?tid=${missing.id}`, {
      token: h.adminToken,
    });
    assert.equal(del.code, 200, del.message);
    assert.ok(await gone(area(missing.id)), 'deleting the task freed its area');

    // A redirect to a blocked address fails the task on that hop.
    const hop = await start(`${origin.base}/redirect/x?to=http://169.254.169.254/latest`, '/local/x');
    const blocked = await finished('offline_download', hop.id);
    assert.equal(blocked.state, 'failed');
    assert.match(blocked.error, /169\.254\.169\.254 is blocked/);
    assert.ok(await gone(join(h.dataDir, 'files', 'x')), 'nothing arrived');
  });

  it('a DNS name that resolves to a denied address is refused on connect (the lookup hook)', async () => {
    const strict = await startHarness({
      offlineDownload: { denyHosts: ['127.0.0.0/8', '::1/128'] },
    });
    try {
      const port = new URL(origin.base).port;
      const before = origin.seen.length;
      // The name itself is not denied, so the request is accepted; the connection is not.
      const res = await strict.json<{ tasks: TaskView[] }>('POST', '/api/fs/add_offline_download', {
        token: strict.adminToken,
        body: { urls: [`http://localhost:${port}/range/big.bin`], path: '/local/dns' },
      });
      assert.equal(res.code, 200, res.message);
      const id = res.data.tasks[0]?.id;
      const t = await waitFor(
        async () => {
          const r = await strict.json<TaskView[]>('POST', `/api/task/offline_download/info?tid=${id}`, {
            token: strict.adminToken,
          });
          const task = r.data[0];
          return task && ['failed', 'succeeded'].includes(task.state) ? task : undefined;
        },
        10_000,
        'the refused download',
      );
      assert.equal(t.state, 'failed');
      assert.match(t.error, /localhost \((127\.0\.0\.1|::1)\) is blocked by offlineDownload\.denyHosts/);
      assert.equal(t.retries, 1, 'refused for good, not retried');
      assert.equal(origin.seen.length, before, 'the origin never saw a request');
      // And a literal loopback address is refused before any task exists.
      const literal = await strict.json('POST', '/api/fs/add_offline_download', {
        token: strict.adminToken,
        body: { urls: [`http://127.0.0.1:${port}/x`], path: '/local' },
      });
      assert.equal(literal.code, 403);
    } finally {
      await strict.close();
    }
  });

  describe('delete_policy upload_download_stream (the OpenList UI default)', () => {
    const STREAM = { delete_policy: 'upload_download_stream' };
    const noTransfer = async (id: string) => {
      const t = await h.json('POST', `/api/task/offline_download_transfer/info?tid=${id}-t0`, {
        token: h.adminToken,
      });
      assert.equal(t.code, 404, 'no transfer task was created');
    };

    it('SimpleHttp streams the body into /local: named by Content-Disposition, no transfer task, nothing in the data dir', async () => {
      const task = await start(`${origin.base}/cd/streamed.bin`, '/local/streamed', 'SimpleHttp', STREAM);
      const dl = await finished('offline_download', task.id);
      assert.equal(dl.state, 'succeeded', dl.error);
      assert.equal(dl.progress, 100);
      await noTransfer(task.id);
      assert.ok(await gone(area(task.id)), 'nothing under <dataDir>/offline');
      const dir = join(h.dataDir, 'files', 'streamed');
      assert.deepEqual(await readdir(dir), ['résumé file.bin'], 'the file alone, no temp file left');
      assert.equal(await sha256File(join(dir, 'résumé file.bin')), sha);
    });

    it('while it streams, only a temp file exists; cancel → canceled within 1 s, nothing under the final name', async () => {
      const task = await start(`${origin.base}/slow`, '/local/stream-slow', 'SimpleHttp', STREAM);
      const dir = join(h.dataDir, 'files', 'stream-slow');
      await waitFor(
        async () => ((await info('offline_download', task.id))?.progress ?? 0) > 0 || undefined,
        10_000,
        'the first bytes',
      );
      assert.ok(await gone(area(task.id)), 'nothing under <dataDir>/offline while streaming');
      const names = await readdir(dir);
      assert.equal(names.length, 1);
      assert.notEqual(names[0], 'slow', `a temp name, not the final one: ${names[0]}`);
      const asked = Date.now();
      const res = await h.json('POST', `/api/task/offline_download/cancel?tid=${task.id}`, {
        token: h.adminToken,
      });
      assert.equal(res.code, 200, res.message);
      const ended = await finished('offline_download', task.id, 5000);
      assert.equal(ended.state, 'canceled');
      assert.ok(Date.now() - asked < 1000, `canceled after ${Date.now() - asked} ms`);
      assert.deepEqual(await readdir(dir), [], 'neither the file nor its temp file');
      await noTransfer(task.id);
    });

    it('a connection cut mid-stream is not placed; the retry streams from the first byte', async () => {
      origin.cut.set('/range/cut-stream.bin', Math.floor(SIZE / 2));
      const task = await start(
        `${origin.base}/range/cut-stream.bin`,
        '/local/cut-stream',
        'SimpleHttp',
        STREAM,
      );
      const dl = await finished('offline_download', task.id);
      assert.equal(dl.state, 'succeeded', dl.error);
      assert.ok(dl.retries >= 1, 'the cut cost one attempt');
      const requests = origin.requests('/range/cut-stream.bin');
      assert.ok(requests.length >= 2);
      assert.ok(
        requests.every((r) => !r.range && r.status === 200),
        'no range: a stream keeps nothing to resume',
      );
      assert.equal(await sha256File(join(h.dataDir, 'files', 'cut-stream', 'cut-stream.bin')), sha);
      await noTransfer(task.id);
    });

    it('to S3: the body streams into a multipart upload, byte-identical', async () => {
      const task = await start(`${origin.base}/range/big.bin`, '/s3/streamed', 'SimpleHttp', STREAM);
      const dl = await finished('offline_download', task.id);
      assert.equal(dl.state, 'succeeded', dl.error);
      await noTransfer(task.id);
      const r = h.core.mounts.resolve('/s3/streamed/big.bin');
      const hash = createHash('sha256');
      for await (const chunk of await r.driver.read(r.path)) hash.update(chunk as Buffer);
      assert.equal(hash.digest('hex'), sha);
      assert.ok(await gone(area(task.id)));
    });

    it('aria2 refuses it before any task exists, with a message naming the tool and the policy', async () => {
      const before = await h.json<{ id: string }[]>('GET', '/api/task/offline_download/undone', {
        token: h.adminToken,
      });
      const res = await add({
        urls: [`${origin.base}/range/big.bin`],
        path: '/local/a2s',
        tool: 'aria2',
        ...STREAM,
      });
      assert.equal(res.code, 400);
      assert.match(res.message, /upload_download_stream works with the SimpleHttp tool only; aria2/);
      assert.equal(res.data, null);
      const after = await h.json<{ id: string }[]>('GET', '/api/task/offline_download/undone', {
        token: h.adminToken,
      });
      assert.equal(after.data.length, before.data.length, 'no task was created');
    });
  });

  it('to S3: the file arrives byte-identical; delete_never keeps the download, the default removes it', async () => {
    const keep = await start(`${origin.base}/range/big.bin`, '/s3/keep', 'SimpleHttp', {
      delete_policy: 'delete_never',
    });
    const drop = await start(`${origin.base}/range/big.bin`, '/s3/drop', 'SimpleHttp');
    for (const [task, dir] of [
      [keep, 'keep'],
      [drop, 'drop'],
    ] as const) {
      await bothSucceed(task.id);
      const r = h.core.mounts.resolve(`/s3/${dir}/big.bin`);
      const hash = createHash('sha256');
      for await (const chunk of await r.driver.read(r.path)) hash.update(chunk as Buffer);
      assert.equal(hash.digest('hex'), sha, `${dir}: byte-identical in S3`);
    }
    assert.equal(await sha256File(join(area(keep.id), 'done', 'big.bin')), sha, 'delete_never kept it');
    assert.ok(await gone(area(drop.id)), 'delete_on_upload_succeed removed it');
    // Deleting the delete_never tasks leaves the kept file; that is what the policy asks.
    const del = await h.json('POST', `/api/task/offline_download_transfer/delete?tid=${keep.id}-t0`, {
      token: h.adminToken,
    });
    assert.equal(del.code, 200, del.message);
    assert.ok(!(await gone(join(area(keep.id), 'done', 'big.bin'))));
  });

  it('delete_on_upload_failed removes the download when the transfer fails for good; delete_always after success', async () => {
    // A folder where the file should go: the transfer cannot place it, and retrying will not help.
    await mkdir(join(h.dataDir, 'files', 'clash', 'big.bin'), { recursive: true });
    const failing = await start(`${origin.base}/range/big.bin`, '/local/clash', 'SimpleHttp', {
      delete_policy: 'delete_on_upload_failed',
    });
    const always = await start(`${origin.base}/range/big.bin`, '/local/always', 'SimpleHttp', {
      delete_policy: 'delete_always',
    });
    assert.equal((await finished('offline_download', failing.id)).state, 'succeeded');
    const tr = await finished('offline_download_transfer', `${failing.id}-t0`);
    assert.equal(tr.state, 'failed');
    assert.match(tr.error, /big\.bin/);
    assert.equal(tr.retries, 1, `failed for good at once: ${tr.error}`);
    assert.ok(await gone(area(failing.id)), 'the download went with the failure');
    await bothSucceed(always.id);
    assert.equal(await sha256File(join(h.dataDir, 'files', 'always', 'big.bin')), sha);
    assert.ok(await gone(area(always.id)), 'and with the success');
  });

  describe('aria2 (ferry starts its own aria2c)', { skip: !enabledAria2 }, () => {
    it('a connection cut half-way resumes with Range; byte-identical at the destination', async () => {
      origin.cut.set('/range/a2.bin', Math.floor(SIZE / 2));
      const task = await start(`${origin.base}/range/a2.bin`, '/local/a2', 'aria2');
      const dl = await finished('offline_download', task.id);
      assert.equal(dl.state, 'succeeded', `${dl.error} ${JSON.stringify(origin.requests('/range/a2.bin'))}`);
      await bothSucceed(task.id);
      const ranged = origin.requests('/range/a2.bin').filter((s) => s.status === 206);
      assert.ok(
        ranged.length >= 1,
        `aria2 resumed with a range: ${JSON.stringify(origin.requests('/range/a2.bin'))}`,
      );
      const from = Number(/^bytes=(\d+)-/.exec(ranged[0]?.range ?? '')?.[1]);
      assert.ok(from > 0, `resumed from byte ${from}`);
      assert.equal(await sha256File(join(h.dataDir, 'files', 'a2', 'a2.bin')), sha);
      assert.ok(await gone(area(task.id)));
    });

    it('cancel of a slow download → canceled within 1 s, aria2 forgot it, temp files gone', async () => {
      const task = await start(`${origin.base}/slow`, '/local/a2slow', 'aria2');
      const running = await waitFor(
        async () => {
          const t = await h.core.tasks.get(
            { id: 1, username: 'admin', role: 2, basePath: '/', permission: 0 },
            task.id,
          );
          return typeof t.payload.gid === 'string' && t.doneBytes > 0 ? t : undefined;
        },
        10_000,
        'aria2 to receive bytes',
      );
      const gid = running.payload.gid as string;
      const aria2 = await h.core.offline.aria2();
      assert.equal((await aria2.tellStatus(gid)).status, 'active');
      const asked = Date.now();
      const res = await h.json('POST', `/api/task/offline_download/cancel?tid=${task.id}`, {
        token: h.adminToken,
      });
      assert.equal(res.code, 200, res.message);
      const ended = await finished('offline_download', task.id, 5000);
      const took = Date.now() - asked;
      assert.equal(ended.state, 'canceled');
      process.stderr.write(`# aria2 cancel took ${took} ms\n`);
      assert.ok(took < 1000, `canceled after ${took} ms`);
      await assert.rejects(aria2.tellStatus(gid), Aria2RpcError, 'aria2 no longer knows the gid');
      const active = await aria2.call<{ gid: string }[]>('aria2.tellActive', [['gid']]);
      assert.ok(!active.some((a) => a.gid === gid));
      assert.ok(await gone(area(task.id)), 'temp files removed');
    });

    it('uses a configured aria2 RPC endpoint (rpcUrl + secret) instead of starting its own', async () => {
      // An aria2c of the operator's (ferry's launcher reused for brevity; its secret read from the client).
      const dir = await mkdtemp(join(tmpdir(), 'ferry-aria2-'));
      const external = await Aria2Daemon.start({ binary: 'aria2c', dir, log: pino({ level: 'silent' }) });
      const secret = (external.client as unknown as { secret: string }).secret;
      const h2 = await startHarness({
        offlineDownload: { aria2: { rpcUrl: external.client.rpcUrl, secret } },
      });
      try {
        const res = await h2.json<{ tasks: TaskView[] }>('POST', '/api/fs/add_offline_download', {
          token: h2.adminToken,
          body: { urls: [`${origin.base}/range/external.bin`], path: '/local/ext', tool: 'aria2' },
        });
        assert.equal(res.code, 200, res.message);
        const id = res.data.tasks[0]?.id as string;
        for (const [type, tid] of [
          ['offline_download', id],
          ['offline_download_transfer', `${id}-t0`],
        ] as const) {
          const t = await waitFor(
            async () => {
              const r = await h2.json<TaskView[]>('POST', `/api/task/${type}/info?tid=${tid}`, {
                token: h2.adminToken,
              });
              return r.data[0] && ['failed', 'succeeded'].includes(r.data[0].state) ? r.data[0] : undefined;
            },
            60_000,
            type,
          );
          assert.equal(t.state, 'succeeded', t.error);
        }
        assert.equal(h2.core.offline.aria2Pid, undefined, 'ferry started no aria2c of its own');
        assert.equal(await sha256File(join(h2.dataDir, 'files', 'ext', 'external.bin')), sha);
      } finally {
        await h2.close();
        await external.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('aria2 refuses what it cannot fetch: a 404 fails the task without retries', async () => {
      const task = await start(`${origin.base}/missing`, '/local/a2x', 'aria2');
      const failed = await finished('offline_download', task.id);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error, /aria2/);
      assert.equal(failed.retries, 1);
    });
  });

  it('a restart (ferry closed mid-download, started again on its data dir) resumes with Range, both tools', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ferry-restart-'));
    const open = async () => {
      const config = await loadConfig(
        { FERRY_DATA_DIR: dataDir, FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD },
        { sqliteSynchronous: 'NORMAL', tasks: { pollIntervalMs: 50, progressIntervalMs: 100 } },
      );
      const core = await startCore(config, pino({ level: 'silent' }));
      const app = await buildApp(core);
      await app.ready();
      const login = await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username: 'admin', password: ADMIN_PASSWORD },
      });
      const token = login.json().data.token as string;
      const api = async <T>(url: string, payload?: unknown) =>
        (
          await app.inject({
            method: 'POST',
            url,
            headers: { authorization: token },
            ...(payload !== undefined && { payload: payload as Record<string, unknown> }),
          })
        ).json() as { code: number; message: string; data: T };
      return {
        core,
        api,
        async close() {
          await app.close();
          await core.close();
        },
      };
    };
    let ferry = await open();
    try {
      const tools = enabledAria2 ? (['SimpleHttp', 'aria2'] as const) : (['SimpleHttp'] as const);
      const started: { tool: string; id: string; path: string; partial: string }[] = [];
      for (const tool of tools) {
        const path = `/range/restart-${tool}.bin`;
        origin.throttle.set(path, 8 * 1024 * 1024);
        const res = await ferry.api<{ tasks: TaskView[] }>('/api/fs/add_offline_download', {
          urls: [`${origin.base}${path}`],
          path: '/local/restart',
          tool,
        });
        assert.equal(res.code, 200, res.message);
        const id = res.data.tasks[0]?.id as string;
        const dir = join(dataDir, 'offline', id);
        const partial = tool === 'aria2' ? join(dir, 'aria2', `restart-${tool}.bin`) : join(dir, 'partial');
        started.push({ tool, id, path, partial });
      }
      for (const { partial } of started)
        await waitFor(
          async () => ((await stat(partial).catch(() => null))?.size ?? 0) >= 1024 * 1024 || undefined,
          10_000,
          `a first MiB in ${partial}`,
        );
      const aria2Pid = ferry.core.offline.aria2Pid;
      await ferry.close();
      if (aria2Pid !== undefined) assert.throws(() => process.kill(aria2Pid, 0), 'aria2c stopped with ferry');
      const had = new Map(
        await Promise.all(started.map(async (s) => [s.tool, (await stat(s.partial)).size] as const)),
      );
      ferry = await open();
      for (const { tool, id, path } of started) {
        for (const [type, tid] of [
          ['offline_download', id],
          ['offline_download_transfer', `${id}-t0`],
        ] as const) {
          const t = await waitFor(
            async () => {
              const r = await ferry.api<TaskView[]>(`/api/task/${type}/info?tid=${tid}`);
              const task = r.data?.[0];
              return task && isFinished(task.state) ? task : undefined;
            },
            60_000,
            `${tool} ${type}`,
          );
          assert.equal(t.state, 'succeeded', `${tool} ${type}: ${t.error}`);
        }
        const ranged = origin.requests(path).filter((r) => r.status === 206);
        const from = Number(/^bytes=(\d+)-/.exec(ranged[0]?.range ?? '')?.[1]);
        assert.ok(
          from > 0 && from >= (had.get(tool) ?? 0) - 1024 * 1024,
          `${tool} resumed from byte ${from}`,
        );
        assert.equal(await sha256File(join(dataDir, 'files', 'restart', `restart-${tool}.bin`)), sha, tool);
      }
    } finally {
      await ferry.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('lists the tools', async () => {
    const res = await h.json<string[]>('GET', '/api/public/offline_download_tools');
    assert.deepEqual(res.data, ['SimpleHttp', 'aria2']);
    assert.ok((await readdir(h.dataDir)).includes('offline'));
  });
});
