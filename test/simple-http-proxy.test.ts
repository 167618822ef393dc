import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  request as httpRequest,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { NoProxy } from '../src/download/no-proxy.ts';
import { type Harness, startHarness } from './helpers/harness.ts';
import { type FerryProcess, freePort, PROJECT_ROOT, spawnFerry } from './helpers/process.ts';
import { sha256, sha256File } from './helpers/tree.ts';

/**
 * SimpleHttp through a proxy, as curl goes through one: http:// URLs as absolute-URI requests to
 * the proxy, https:// URLs through a CONNECT tunnel (TLS end to end), the hosts of `no_proxy`
 * straight to the server. The proxy is a small one written here with node:http, which records
 * what it was asked and can demand credentials.
 */

const BODY = randomBytes(3 * 1024 * 1024 + 777);
const BODY_SHA = sha256(BODY);
const TLS_DIR = join(PROJECT_ROOT, 'test', 'fixtures', 'tls');

/** A forward (GET http://…) and CONNECT proxy on loopback; `seen` lists its requests. */
class TestProxy {
  server!: HttpServer;
  seen: string[] = [];
  /** When set, requests without this `Proxy-Authorization` get 407. */
  auth: string | null = null;
  private readonly tunnels = new Set<Socket>();
  url = '';

  async start(): Promise<void> {
    this.server = createHttpServer((req, res) => {
      this.seen.push(`${req.method} ${req.url}`);
      if (!this.authorized(req.headers['proxy-authorization'])) {
        res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' }).end();
        return;
      }
      const target = new URL(req.url ?? '');
      const headers = { ...req.headers };
      delete headers['proxy-authorization'];
      delete headers['proxy-connection'];
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    this.server.on('connect', (req, client: Socket, head: Buffer) => {
      this.seen.push(`CONNECT ${req.url}`);
      if (!this.authorized(req.headers['proxy-authorization'])) {
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
        return;
      }
      const at = (req.url ?? '').lastIndexOf(':');
      const upstream = netConnect(Number((req.url ?? '').slice(at + 1)), (req.url ?? '').slice(0, at), () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      for (const s of [client, upstream]) {
        this.tunnels.add(s);
        s.on('close', () => this.tunnels.delete(s));
      }
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private authorized(header: string | undefined): boolean {
    return this.auth === null || header === `Basic ${Buffer.from(this.auth).toString('base64')}`;
  }

  async close(): Promise<void> {
    for (const s of this.tunnels) s.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

describe('SimpleHttp through a proxy', () => {
  let proxy: TestProxy;
  let origin: HttpServer;
  let https: HttpServer;
  let port = 0;
  let httpsPort = 0;
  /** Paths the origin served, in order. */
  const served: string[] = [];

  before(async () => {
    proxy = new TestProxy();
    await proxy.start();
    origin = createHttpServer((req, res) => {
      served.push(req.url ?? '');
      if (req.url?.startsWith('/hop')) {
        res.writeHead(302, { location: new URL(req.url, 'http://x').searchParams.get('to') ?? '/' }).end();
        return;
      }
      res.writeHead(200, { 'content-length': BODY.length, etag: '"p"' }).end(BODY);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
    const [key, cert] = await Promise.all([
      readFile(join(TLS_DIR, 'localhost-key.pem')),
      readFile(join(TLS_DIR, 'localhost-cert.pem')),
    ]);
    https = createHttpsServer({ key, cert }, (req, res) => {
      served.push(`https ${req.url}`);
      res.writeHead(200, { 'content-length': BODY.length }).end(BODY);
    });
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
    httpsPort = (https.address() as AddressInfo).port;
  });

  after(async () => {
    await proxy?.close();
    for (const server of [origin, https]) {
      server?.closeAllConnections();
      await new Promise((r) => server?.close(r));
    }
  });

  describe('ferry serve with HTTP_PROXY, HTTPS_PROXY and NO_PROXY in its environment', () => {
    let ferry: FerryProcess;
    let dataDir = '';
    let token = '';
    const PASSWORD = 'proxy-test-password';

    before(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'ferry-proxy-'));
      ferry = await spawnFerry(dataDir, {
        FERRY_ADMIN_PASSWORD: PASSWORD,
        NODE_EXTRA_CA_CERTS: join(TLS_DIR, 'localhost-cert.pem'),
        // Upper case, with the lower-case names (which win, as in curl) left empty.
        http_proxy: '',
        https_proxy: '',
        no_proxy: '',
        HTTP_PROXY: proxy.url,
        HTTPS_PROXY: proxy.url,
        // curl: a CIDR range matches URLs that name an address, never a name resolving into it.
        NO_PROXY: 'example.invalid, 127.0.0.0/8',
      });
      const login = await ferry.api<{ token: string }>('POST', '/api/auth/login', {
        body: { username: 'admin', password: PASSWORD },
      });
      assert.equal(login.code, 200, login.message);
      token = login.data.token;
    });

    after(async () => {
      await ferry?.stop();
      if (dataDir && !process.env.KEEP) await rm(dataDir, { recursive: true, force: true });
    });

    const download = async (url: string, dir: string) => {
      const res = await ferry.api<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
        token,
        body: {
          urls: [url],
          path: `/local/${dir}`,
          tool: 'SimpleHttp',
          delete_policy: 'upload_download_stream',
        },
      });
      assert.equal(res.code, 200, res.message);
      const task = await ferry.finished(token, 'offline_download', res.data.tasks[0]?.id ?? '', 60_000);
      assert.equal(task.state, 'succeeded', `${task.error}\n${ferry.output()}`);
    };

    it('an http:// URL goes to the proxy as an absolute-URI request', async () => {
      await download(`http://localhost:${port}/via-proxy.bin`, 'plain');
      assert.ok(proxy.seen.includes(`GET http://localhost:${port}/via-proxy.bin`), proxy.seen.join('\n'));
      assert.equal(await sha256File(join(dataDir, 'files', 'plain', 'via-proxy.bin')), BODY_SHA);
    });

    it('an https:// URL goes through a CONNECT tunnel, the certificate checked end to end', async () => {
      await download(`https://localhost:${httpsPort}/secure.bin`, 'tls');
      assert.ok(proxy.seen.includes(`CONNECT localhost:${httpsPort}`), proxy.seen.join('\n'));
      assert.ok(served.includes('https /secure.bin'));
      assert.equal(await sha256File(join(dataDir, 'files', 'tls', 'secure.bin')), BODY_SHA);
    });

    it('a host NO_PROXY lists is fetched directly', async () => {
      const before = proxy.seen.length;
      await download(`http://127.0.0.1:${port}/direct.bin`, 'direct');
      assert.deepEqual(proxy.seen.slice(before), [], 'the proxy saw nothing');
      assert.ok(served.includes('/direct.bin'));
      assert.equal(await sha256File(join(dataDir, 'files', 'direct', 'direct.bin')), BODY_SHA);
    });
  });

  describe('offlineDownload.httpProxy in the config, with credentials and a strict host policy', () => {
    let h: Harness;

    before(async () => {
      proxy.auth = 'ferry:pr0xy-s3cret';
      const [user, password] = proxy.auth.split(':');
      h = await startHarness({
        tasks: { maxRetry: { offline_download: 2 }, retryBaseDelayMs: 50, retryMaxDelayMs: 100 },
        offlineDownload: {
          httpProxy: proxy.url.replace('//', `//${user}:${password}@`),
          // The proxy itself is on a denied address: the policy judges targets, not the operator's proxy.
          denyHosts: ['127.0.0.0/8', '::1/128'],
        },
      });
    });

    after(async () => {
      proxy.auth = null;
      await h?.close();
    });

    const add = (url: string, path: string) =>
      h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
        token: h.adminToken,
        body: { urls: [url], path, tool: 'SimpleHttp' },
      });

    it('sends the credentials of the proxy URL; the proxy resolves the name, so only names and literal addresses are checked', async () => {
      const res = await add(`http://localhost:${port}/named.bin`, '/local/named');
      assert.equal(res.code, 200, res.message);
      const id = res.data.tasks[0]?.id ?? '';
      const task = await h.finished('offline_download', id);
      assert.equal(task.state, 'succeeded', task.error);
      const transfer = await h.finished('offline_download_transfer', `${id}-t0`);
      assert.equal(transfer.state, 'succeeded', transfer.error);
      assert.equal(await sha256File(join(h.dataDir, 'files', 'named', 'named.bin')), BODY_SHA);
      assert.ok(proxy.seen.includes(`GET http://localhost:${port}/named.bin`));
    });

    it('a denied literal address is refused before any task, and on a redirect hop', async () => {
      const literal = await add(`http://127.0.0.1:${port}/x.bin`, '/local/x');
      assert.equal(literal.code, 403);
      assert.match(literal.message, /127\.0\.0\.1 is blocked by offlineDownload\.denyHosts/);
      const before = proxy.seen.length;
      const hop = await add(
        `http://localhost:${port}/hop?to=http://127.0.0.1:${port}/secret.bin`,
        '/local/hop',
      );
      assert.equal(hop.code, 200, hop.message);
      const task = await h.finished('offline_download', hop.data.tasks[0]?.id ?? '');
      assert.equal(task.state, 'failed');
      assert.match(task.error, /127\.0\.0\.1 is blocked by offlineDownload\.denyHosts/);
      assert.deepEqual(
        proxy.seen.slice(before),
        [`GET http://localhost:${port}/hop?to=http://127.0.0.1:${port}/secret.bin`],
        'the denied hop was never asked for',
      );
    });

    it('wrong proxy credentials fail the download with a message that does not repeat them', async () => {
      proxy.auth = 'ferry:another-password';
      try {
        const res = await add(`http://localhost:${port}/refused.bin`, '/local/refused');
        assert.equal(res.code, 200, res.message);
        const task = await h.finished('offline_download', res.data.tasks[0]?.id ?? '');
        assert.equal(task.state, 'failed');
        assert.match(task.error, /the proxy for localhost:\d+ wants other credentials \(407/);
        assert.equal(task.retries, 1, 'refused for good: no retry would have other credentials');
        assert.doesNotMatch(task.error, /pr0xy-s3cret/);
      } finally {
        proxy.auth = 'ferry:pr0xy-s3cret';
      }
    });
  });

  it('a proxy that is down fails the attempt with a message that names the proxy', async () => {
    const h = await startHarness({
      tasks: { maxRetry: { offline_download: 0 } },
      offlineDownload: { httpProxy: `127.0.0.1:${await freePort()}` },
    });
    try {
      const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
        token: h.adminToken,
        body: { urls: [`http://localhost:${port}/y.bin`], path: '/local/y', tool: 'SimpleHttp' },
      });
      assert.equal(res.code, 200, res.message);
      const task = await h.finished('offline_download', res.data.tasks[0]?.id ?? '');
      assert.equal(task.state, 'failed');
      assert.match(task.error, /connection refused by the proxy for localhost:\d+/);
    } finally {
      await h.close();
    }
  });
});

describe('proxy settings', () => {
  it('are read from the environment as curl reads them, lower case first', async () => {
    const config = await loadConfig({
      FERRY_DATA_DIR: tmpdir(),
      http_proxy: 'http://lower:3128',
      HTTP_PROXY: 'http://upper:3128',
      HTTPS_PROXY: 'proxy.example:8080',
      NO_PROXY: 'localhost, .internal.example ,10.0.0.0/8',
    });
    const od = config.offlineDownload;
    assert.equal(od.httpProxy, 'http://lower:3128');
    assert.equal(od.httpsProxy, 'proxy.example:8080');
    assert.deepEqual(od.noProxy, ['localhost', '.internal.example', '10.0.0.0/8']);
    const none = await loadConfig({ FERRY_DATA_DIR: tmpdir() });
    assert.deepEqual([none.offlineDownload.httpProxy, none.offlineDownload.noProxy], ['', []]);
  });

  it('refuse a proxy that is not an http(s) URL', async () => {
    for (const bad of ['socks5://127.0.0.1:1080', 'ftp://proxy:21', 'http://']) {
      await assert.rejects(
        loadConfig({ FERRY_DATA_DIR: tmpdir(), HTTPS_PROXY: bad }),
        /offlineDownload\.httpsProxy: an http:\/\/ or https:\/\/ proxy URL/,
        bad,
      );
    }
  });

  it('no_proxy matches as curl does: names with their subdomains, addresses and CIDR ranges of literal hosts, * for all', () => {
    const rules = new NoProxy([
      'example.com',
      '.corp.example',
      '*.wild.example',
      '10.0.0.0/8',
      '::1',
      'fd00::/8',
    ]);
    const bypassed = (host: string) => rules.bypasses(host);
    for (const host of [
      'example.com',
      'EXAMPLE.com.',
      'www.example.com',
      'corp.example',
      'a.b.corp.example',
      'x.wild.example',
      '10.1.2.3',
      '[::1]',
      '[fd00::5]',
    ])
      assert.ok(bypassed(host), `${host} bypasses the proxy`);
    for (const host of [
      'badexample.com',
      'example.com.evil',
      '11.0.0.1',
      'ten.example',
      '[fe80::1]',
      'localhost',
    ])
      assert.ok(!bypassed(host), `${host} goes through the proxy`);
    assert.ok(new NoProxy(['*']).bypasses('anything.example'));
    assert.ok(!new NoProxy([]).bypasses('anything.example'));
    // curl takes `*` alone as "everything", not as an entry among others.
    assert.ok(!new NoProxy(['*', 'example.com']).bypasses('other.example'));
  });
});
