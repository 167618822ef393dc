import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { type FerryProcess, PROJECT_ROOT, spawnFerry } from './helpers/process.ts';
import { sha256, sha256File } from './helpers/tree.ts';

/**
 * SimpleHttp (undici, src/download/http-download.ts) against the responses a real server may
 * send beyond nginx's plain Content-Length: chunked bodies, bodies that end with the connection,
 * a head that arrives a few bytes at a time, a chunked body cut half-way (must be fetched again,
 * never kept short — into the data dir or streamed to the destination), a server that goes
 * silent, and something that is not HTTP at all; connections kept alive from one task to the next.
 * HTTPS runs against a real `ferry serve` that trusts the test's certificate
 * (NODE_EXTRA_CA_CERTS), reached through a redirect from plain HTTP, by name.
 */

const BODY = randomBytes(6 * 1024 * 1024 + 12_345);
const BODY_SHA = sha256(BODY);
const TLS_DIR = join(PROJECT_ROOT, 'test', 'fixtures', 'tls');

/** Writes `body` as a chunked response in pieces of varied sizes (1 byte to 300 KiB). */
async function writeChunked(body: Buffer, write: (piece: Buffer) => boolean, cutAt = Infinity) {
  let sizes = 1;
  for (let at = 0; at < body.length && at < cutAt; ) {
    const n = Math.min(body.length - at, (sizes * 7919) % (300 * 1024) || 1);
    sizes++;
    write(body.subarray(at, at + n));
    at += n;
    if (sizes % 8 === 0) await new Promise((r) => setImmediate(r));
  }
}

describe('SimpleHttp: responses beyond a plain Content-Length', () => {
  let h: Harness;
  let http: HttpServer;
  let raw: NetServer;
  let httpBase = '';
  let rawBase = '';
  const hits = new Map<string, number>();
  /** The connection each path of the chunked server was last asked for on. */
  const socketOf = new Map<string, Socket>();
  /** Connections to /silent, which is never answered: closed once ferry lets go of them. */
  const silent: Socket[] = [];
  const hit = (path: string) => {
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    return n;
  };

  before(async () => {
    h = await startHarness({
      tasks: { retryBaseDelayMs: 100, retryMaxDelayMs: 200, maxRetry: { offline_download: 1 } },
    });
    // node:http answers without a Content-Length with a chunked body.
    http = createHttpServer((req, res) => {
      const path = req.url ?? '/';
      const n = hit(path);
      socketOf.set(path, req.socket);
      if (path.startsWith('/hop/')) {
        res.writeHead(302, { location: path.slice('/hop'.length) }).end('moved');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const cut = path.startsWith('/chunked-cut') && n === 1 ? BODY.length / 2 : Infinity;
      void writeChunked(BODY, (piece) => res.write(piece), cut).then(() => {
        // The first request to /chunked-cut… ends mid-body, without the last chunk.
        if (cut !== Infinity) res.socket?.destroy();
        else res.end();
      });
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    httpBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    // Byte for byte: answers a plain server library would not send.
    raw = createNetServer((socket: Socket) => {
      socket.once('data', (data) => {
        const path = /^GET (\S+)/.exec(data.toString('latin1'))?.[1] ?? '/';
        hit(path);
        void answerRaw(path, socket).catch(() => socket.destroy());
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    rawBase = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  });

  after(async () => {
    await h?.close();
    http?.closeAllConnections();
    await new Promise((r) => http?.close(r));
    for (const socket of silent) socket.destroy();
    await new Promise((r) => raw?.close(r));
  });

  async function answerRaw(path: string, socket: Socket): Promise<void> {
    if (path === '/close') {
      // HTTP/1.0 style: no length, no chunks; the body ends when the connection does.
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n');
      socket.end(BODY);
    } else if (path === '/dribble') {
      const head = `HTTP/1.1 200 OK\r\ncontent-length: ${BODY.length}\r\nx-padding: ${'p'.repeat(300)}\r\n\r\n`;
      for (let at = 0; at < head.length; at += 7) {
        socket.write(head.slice(at, at + 7));
        await new Promise((r) => setTimeout(r, 1));
      }
      socket.end(BODY);
    } else if (path === '/silent') {
      silent.push(socket);
    } else if (path === '/stall') {
      // A head and the first MiB, then nothing more: the connection stays open, silent.
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BODY.length}\r\n\r\n`);
      socket.write(BODY.subarray(0, 1024 * 1024));
      silent.push(socket);
    } else {
      socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n');
    }
  }

  const download = async (url: string, dir: string, extra: Record<string, unknown> = {}) => {
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
      token: h.adminToken,
      body: { urls: [url], path: `/local/${dir}`, tool: 'SimpleHttp', ...extra },
    });
    assert.equal(res.code, 200, res.message);
    const id = res.data.tasks[0]?.id ?? '';
    return { id, task: await h.finished('offline_download', id, 60_000) };
  };

  const landed = async (id: string, file: string) => {
    const transfer = await h.finished('offline_download_transfer', `${id}-t0`, 60_000);
    assert.equal(transfer.state, 'succeeded', transfer.error);
    return sha256File(join(h.dataDir, 'files', file));
  };

  it('a chunked body lands byte-identical', async () => {
    const { id, task } = await download(`${httpBase}/chunked`, 'chunked');
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(await landed(id, 'chunked/chunked'), BODY_SHA);
  });

  it('a body that ends with the connection lands byte-identical', async () => {
    const { id, task } = await download(`${rawBase}/close`, 'close');
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(await landed(id, 'close/close'), BODY_SHA);
  });

  it('a head that arrives a few bytes at a time is read whole', async () => {
    const { id, task } = await download(`${rawBase}/dribble`, 'dribble');
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(await landed(id, 'dribble/dribble'), BODY_SHA);
  });

  it('a chunked body cut half-way is not kept: the retry fetches it whole', async () => {
    const { id, task } = await download(`${httpBase}/chunked-cut`, 'cut');
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(task.retries, 1, 'the cut cost one attempt');
    assert.equal(hits.get('/chunked-cut'), 2);
    assert.equal(await landed(id, 'cut/chunked-cut'), BODY_SHA);
  });

  it('streamed to the destination (upload_download_stream), a cut chunked body is never placed: the retry streams it whole', async () => {
    const { task } = await download(`${httpBase}/chunked-cut-stream`, 'cut-stream', {
      delete_policy: 'upload_download_stream',
    });
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(task.retries, 1, 'the cut cost one attempt');
    assert.equal(hits.get('/chunked-cut-stream'), 2);
    assert.equal(await sha256File(join(h.dataDir, 'files', 'cut-stream', 'chunked-cut-stream')), BODY_SHA);
  });

  it('keeps connections alive: the next download to the same server reuses one', async () => {
    const first = await download(`${httpBase}/hop/kept-1`, 'kept');
    assert.equal(first.task.state, 'succeeded', first.task.error);
    const second = await download(`${httpBase}/kept-2`, 'kept');
    assert.equal(second.task.state, 'succeeded', second.task.error);
    // The redirect's next hop may go out before the first connection is free again; the next
    // download then finds them idle.
    const earlier = [socketOf.get('/hop/kept-1'), socketOf.get('/kept-1')];
    assert.ok(earlier.includes(socketOf.get('/kept-2')), 'the next download reused a connection');
    assert.equal(await landed(second.id, 'kept/kept-2'), BODY_SHA);
  });

  it('cancel while the server has not answered yet: canceled within 1 s, connection closed', async () => {
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
      token: h.adminToken,
      body: { urls: [`${rawBase}/silent`], path: '/local/silent', tool: 'SimpleHttp' },
    });
    assert.equal(res.code, 200, res.message);
    const id = res.data.tasks[0]?.id ?? '';
    const socket = await waitFor(async () => silent[0], 10_000, 'the request to /silent');
    const asked = Date.now();
    const canceled = await h.json('POST', `/api/task/offline_download/cancel?tid=${id}`, {
      token: h.adminToken,
    });
    assert.equal(canceled.code, 200, canceled.message);
    const task = await h.finished('offline_download', id, 5000);
    assert.equal(task.state, 'canceled');
    assert.ok(Date.now() - asked < 1000, `canceled after ${Date.now() - asked} ms`);
    await waitFor(
      async () => (socket.readableEnded || socket.destroyed ? true : undefined),
      5000,
      'ferry to close it',
    );
  });

  it('an answer that is not HTTP fails the download with a clear message', async () => {
    const { task } = await download(`${rawBase}/not-http`, 'not-http');
    assert.equal(task.state, 'failed');
    assert.match(task.error, /bad HTTP response/);
    // The server goes on serving.
    const res = await h.call('GET', '/ping');
    assert.equal(res.body, 'pong');
  });
});

describe('SimpleHttp timeouts', () => {
  let h: Harness;
  let raw: NetServer;
  let base = '';
  const sockets: Socket[] = [];

  before(async () => {
    h = await startHarness({
      tasks: { maxRetry: { offline_download: 0 } },
      offlineDownload: { connectTimeoutMs: 400, idleTimeoutMs: 400, maxBytes: 2 * 1024 * 1024 },
    });
    raw = createNetServer((socket: Socket) => {
      sockets.push(socket);
      socket.once('data', (data) => {
        const path = /^GET (\S+)/.exec(data.toString('latin1'))?.[1] ?? '/';
        if (path === '/stall') {
          socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${2 * 1024 * 1024}\r\n\r\n`);
          socket.write(BODY.subarray(0, 1024 * 1024));
        } else if (path === '/chunked') {
          // No length: only counting the bytes can hold the size limit.
          socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
          void writeChunked(BODY, (piece) =>
            socket.write(`${piece.length.toString(16)}\r\n${piece.toString('latin1')}\r\n`, 'latin1'),
          )
            .then(() => socket.end('0\r\n\r\n'))
            .catch(() => socket.destroy());
        }
        // Anything else is never answered.
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  });

  after(async () => {
    await h?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => raw?.close(r));
  });

  const failure = async (path: string, extra: Record<string, unknown> = {}) => {
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
      token: h.adminToken,
      body: { urls: [`${base}${path}`], path: `/local/t${path}`, tool: 'SimpleHttp', ...extra },
    });
    assert.equal(res.code, 200, res.message);
    const task = await h.finished('offline_download', res.data.tasks[0]?.id ?? '', 10_000);
    assert.equal(task.state, 'failed');
    return task.error;
  };

  it('a server that never answers fails the attempt after connectTimeoutMs', async () => {
    assert.match(await failure('/never'), /timed out talking to 127\.0\.0\.1:\d+: no response within 400 ms/);
  });

  it('a body that stops coming fails the attempt after idleTimeoutMs, into the data dir or streamed', async () => {
    assert.match(await failure('/stall'), /timed out talking to 127\.0\.0\.1:\d+: no data for 400 ms/);
    const streamed = await failure('/stall', { delete_policy: 'upload_download_stream' });
    assert.match(streamed, /no data for 400 ms/);
    await assert.rejects(readFile(join(h.dataDir, 'files', 't', 'stall', 'stall')), { code: 'ENOENT' });
  });

  it('a body of unknown length past maxBytes fails, into the data dir or streamed, and nothing is placed', async () => {
    assert.match(await failure('/chunked'), /download exceeds offlineDownload\.maxBytes \(2097152\)/);
    const streamed = await failure('/chunked', { delete_policy: 'upload_download_stream' });
    assert.match(streamed, /download exceeds offlineDownload\.maxBytes \(2097152\)/);
    await assert.rejects(readFile(join(h.dataDir, 'files', 't', 'chunked', 'chunked')), { code: 'ENOENT' });
  });
});

describe('SimpleHttp over HTTPS (ferry serve trusting the test certificate)', () => {
  let ferry: FerryProcess;
  let https: HttpServer;
  let http: HttpServer;
  let dataDir = '';
  const PASSWORD = 'https-test-password';

  before(async () => {
    const [key, cert] = await Promise.all([
      readFile(join(TLS_DIR, 'localhost-key.pem')),
      readFile(join(TLS_DIR, 'localhost-cert.pem')),
    ]);
    https = createHttpsServer({ key, cert }, (_req, res) => {
      res.writeHead(200, { 'content-length': BODY.length, etag: '"tls"' });
      res.end(BODY);
    });
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
    const httpsPort = (https.address() as AddressInfo).port;
    // A plain-HTTP hop that sends the client on to HTTPS, by name (SNI, the certificate's name).
    http = createHttpServer((_req, res) => {
      res.writeHead(302, { location: `https://localhost:${httpsPort}/secure.bin` }).end();
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-https-'));
    ferry = await spawnFerry(dataDir, {
      FERRY_ADMIN_PASSWORD: PASSWORD,
      NODE_EXTRA_CA_CERTS: join(TLS_DIR, 'localhost-cert.pem'),
    });
  });

  after(async () => {
    await ferry?.stop();
    for (const server of [https, http]) {
      server?.closeAllConnections();
      await new Promise((r) => server?.close(r));
    }
    if (dataDir && !process.env.KEEP) await rm(dataDir, { recursive: true, force: true });
  });

  it('downloads through a redirect to HTTPS, byte-identical', async () => {
    const login = await ferry.api<{ token: string }>('POST', '/api/auth/login', {
      body: { username: 'admin', password: PASSWORD },
    });
    assert.equal(login.code, 200, login.message);
    const token = login.data.token;
    const port = (http.address() as AddressInfo).port;
    const res = await ferry.api<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
      token,
      body: { urls: [`http://127.0.0.1:${port}/go`], path: '/local/tls', tool: 'SimpleHttp' },
    });
    assert.equal(res.code, 200, res.message);
    const id = res.data.tasks[0]?.id ?? '';
    const task = await ferry.finished(token, 'offline_download', id, 60_000);
    assert.equal(task.state, 'succeeded', `${task.error}\n${ferry.output()}`);
    const transfer = await ferry.finished(token, 'offline_download_transfer', `${id}-t0`, 60_000);
    assert.equal(transfer.state, 'succeeded', transfer.error);
    assert.equal(await sha256File(join(dataDir, 'files', 'tls', 'secure.bin')), BODY_SHA);
  });
});
