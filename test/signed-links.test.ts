import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BlobWriter, TextReader, ZipWriter } from '@zip.js/zip.js';
import { type Harness, startHarness } from './helpers/harness.ts';

/**
 * Signed download links as the OpenList web UI and the SDKs use them: every file in a listing
 * carries `sign`; `/d/<absolute path>?sign=…` (download) and `/p/…` (inline, for previews) then
 * need no token, but a sign opens its own path and nothing else, and a wrong or expired one is a
 * 401. `raw_url` is built from the reverse proxy's `X-Forwarded-Host/Proto`.
 */

interface Obj {
  name: string;
  is_dir: boolean;
  sign: string;
}
interface GetData extends Obj {
  raw_url: string;
}

const BODY = 'The quick brown fox jumps over the lazy dog\n';

/** `GET path` sent byte for byte over a socket: no client resolves its dot segments first. */
function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk;
    });
    socket.on('error', reject);
    socket.on('end', () => {
      const [head = '', ...body] = reply.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), body: body.join('\r\n\r\n') });
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  });
}

describe('signed links: /d and /p with ?sign=, raw_url', () => {
  let h: Harness;
  let files: string;
  let userToken: string;
  /** The sign fs/list gives `name` in the virtual folder `dir`. */
  const signOf = async (dir: string, name: string, token = h.adminToken, listed = dir) => {
    const list = await h.json<{ content: Obj[] }>('POST', '/api/fs/list', { token, body: { path: listed } });
    assert.equal(list.code, 200, `${dir}: ${list.message}`);
    const sign = list.data.content.find((e) => e.name === name)?.sign;
    assert.ok(sign, `${name} has a sign`);
    return sign;
  };
  const get = (url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') =>
    h.call(method, url, { token: null, headers });

  before(async () => {
    h = await startHarness();
    files = join(h.dataDir, 'files');
    await mkdir(join(files, 'pub', 'sub'), { recursive: true });
    await writeFile(join(files, 'pub', 'fox.txt'), BODY);
    await writeFile(join(files, 'pub', 'sub', 'deeper.txt'), 'deeper');
    await writeFile(join(files, 'pub', '100% done #1?.txt'), 'percent');
    await writeFile(join(files, 'pub', 'page.html'), '<script>alert(1)</script>');
    await writeFile(join(files, 'other.txt'), 'OTHER');
    await mkdir(join(files, 'homes', 'u'), { recursive: true });
    await writeFile(join(files, 'homes', 'u', 'own.txt'), 'own bytes');
    userToken = await h.user('u', { base_path: '/local/homes/u' });
  });
  after(() => h.close());

  it('a listed sign downloads the file without a token from /d and /p, at the root and under /@openlist', async () => {
    const sign = await signOf('/local/pub', 'fox.txt');
    assert.match(sign, /^[A-Za-z0-9_-]{43}=:0$/, 'base64url (padded) HMAC, then :0 (never expires)');
    for (const prefix of ['', '/@openlist']) {
      const d = await get(`${prefix}/d/local/pub/fox.txt?sign=${sign}`);
      assert.equal(d.statusCode, 200, `${prefix}/d: ${d.body}`);
      assert.equal(d.body, BODY);
      assert.match(String(d.headers['content-disposition']), /^attachment/);

      const p = await get(`${prefix}/p/local/pub/fox.txt?sign=${sign}`);
      assert.equal(p.statusCode, 200, `${prefix}/p: ${p.body}`);
      assert.equal(p.body, BODY);
      assert.equal(p.headers['content-type'], 'text/plain; charset=utf-8');
      assert.doesNotMatch(String(p.headers['content-disposition']), /attachment/);

      for (const kind of ['d', 'p']) {
        const part = await get(`${prefix}/${kind}/local/pub/fox.txt?sign=${sign}`, { range: 'bytes=4-8' });
        assert.equal(part.statusCode, 206, `${prefix}/${kind} range`);
        assert.equal(part.body, 'quick');
        assert.equal(part.headers['content-range'], `bytes 4-8/${BODY.length}`);
        const beyond = await get(`${prefix}/${kind}/local/pub/fox.txt?sign=${sign}`, { range: 'bytes=999-' });
        assert.equal(beyond.statusCode, 416);
        const head = await get(`${prefix}/${kind}/local/pub/fox.txt?sign=${sign}`, {}, 'HEAD');
        assert.equal(head.statusCode, 200);
        assert.equal(head.headers['content-length'], String(BODY.length));
      }
    }
    // A URL-encoded sign (as some clients send it) is the same sign.
    const encoded = await get(`/d/local/pub/fox.txt?sign=${encodeURIComponent(sign)}`);
    assert.equal(encoded.body, BODY);
  });

  it('refuses a tampered, expired or foreign sign with 401, and no sign without a token', async () => {
    const sign = await signOf('/local/pub', 'fox.txt');
    const flipped = `${sign[0] === 'A' ? 'B' : 'A'}${sign.slice(1)}`;
    const expired = h.core.links.signUntil('/local/pub/fox.txt', Math.floor(Date.now() / 1000) - 60);
    const otherFile = await signOf('/local', 'other.txt');
    const folder = h.core.links.sign('/local/pub');
    const cases: [string, RegExp][] = [
      [`/d/local/pub/fox.txt?sign=${flipped}`, /sign invalid/],
      [`/d/local/pub/fox.txt?sign=${sign.replace(':0', ':9999999999')}`, /sign invalid/],
      [`/d/local/pub/fox.txt?sign=${sign.replace(':0', '')}`, /expire/],
      [`/d/local/pub/fox.txt?sign=${expired}`, /sign expired/],
      [`/p/local/pub/fox.txt?sign=${otherFile}`, /sign invalid/],
      // A folder's sign opens nothing below it.
      [`/d/local/pub/fox.txt?sign=${folder}`, /sign invalid/],
      [`/d/local/pub/sub/deeper.txt?sign=${folder}`, /sign invalid/],
      [`/d/local/pub/fox.txt?sign=${sign}&sign=${sign}`, /sign invalid/],
    ];
    for (const [url, message] of cases) {
      for (const prefix of ['', '/@openlist']) {
        const res = await get(`${prefix}${url}`);
        assert.equal(res.statusCode, 401, `${prefix}${url} → ${res.statusCode}`);
        const env = JSON.parse(res.body);
        assert.equal(env.code, 401);
        assert.match(env.message, message, url);
        assert.ok(!res.body.includes('quick brown'));
      }
    }
    // Without a sign the token decides, as before: none means 401 (the guest is disabled).
    const bare = await get('/d/local/pub/fox.txt');
    assert.equal(bare.statusCode, 401);
    const withToken = await h.call('GET', '/d/local/pub/fox.txt', { token: h.adminToken });
    assert.equal(withToken.body, BODY);
    // A sign is checked even when a token comes along: it cannot be used to widen a token's reach.
    const both = await h.call('GET', `/d/local/pub/fox.txt?sign=${flipped}`, { token: h.adminToken });
    assert.equal(both.statusCode, 401);
  });

  it('a sign opens no other path: traversal, encoded slashes, dot segments', async () => {
    const sign = await signOf('/local', 'other.txt');
    const refused = (url: string, status: number, body: string) => {
      assert.ok(status >= 400 && status < 500, `${url} → ${status}`);
      assert.ok(!body.includes('OTHER'), `${url} leaks`);
    };
    for (const url of [
      `/d/local/pub/..%2fother.txt?sign=${sign}`,
      `/d/local/pub%2F..%2Fother.txt?sign=${sign}`,
      `/d/local/pub/%252e%252e/other.txt?sign=${sign}`,
      `/d/local/other.txt%00?sign=${sign}`,
      `/d/local/other.txt/x?sign=${sign}`,
    ]) {
      const res = await get(url);
      refused(url, res.statusCode, res.body);
    }
    // Dot segments as they arrive from a client that does not resolve them (inject would).
    const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = new URL(address);
    for (const path of [
      `/d/local/pub/../other.txt?sign=${sign}`,
      `/p/../local/other.txt?sign=${sign}`,
      `/d/local/./pub/../../local/other.txt?sign=${sign}`,
      `/d/local/pub/%2e%2e/other.txt?sign=${sign}`,
    ]) {
      const { status, body } = await rawGet(Number(port), path);
      refused(path, status, body);
    }
    // Spellings of the very same path are that path: an encoded slash or a doubled one is harmless.
    for (const url of [`/d/local%2Fother.txt?sign=${sign}`, `/d//local//other.txt?sign=${sign}`]) {
      const res = await get(url);
      assert.equal(res.body, 'OTHER', url);
    }
  });

  it('names with %, # and ? download through the link the web UI builds', async () => {
    const name = '100% done #1?.txt';
    const sign = await signOf('/local/pub', name);
    // The UI's encodePath: % → %25, ? → %3F, # → %23, space → %20; the rest as is.
    const uiPath = `/local/pub/${name}`
      .replace(/%/g, '%25')
      .replace(/\?/g, '%3F')
      .replace(/#/g, '%23')
      .replace(/ /g, '%20');
    const res = await get(`/d${uiPath}?sign=${sign}`);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.body, 'percent');
    const got = await h.json<GetData>('POST', '/api/fs/get', {
      token: h.adminToken,
      body: { path: `/local/pub/${name}` },
    });
    const raw = new URL(got.data.raw_url);
    assert.equal((await get(`${raw.pathname}${raw.search}`)).body, 'percent');
  });

  it('raw_url follows X-Forwarded-Host/Proto, keeps the prefix and works without a token', async () => {
    const fetchRaw = async (url: string, headers: Record<string, string>) => {
      const got = await h.json<GetData>('POST', url, {
        token: h.adminToken,
        body: { path: '/local/pub/fox.txt' },
        headers,
      });
      assert.equal(got.code, 200, got.message);
      return got.data.raw_url;
    };
    const forwarded = {
      'x-forwarded-host': 'files.example.com:8443, proxy.internal',
      'x-forwarded-proto': 'https',
    };
    const sign = await signOf('/local/pub', 'fox.txt');
    assert.equal(
      await fetchRaw('/api/fs/get', forwarded),
      `https://files.example.com:8443/d/local/pub/fox.txt?sign=${sign}`,
    );
    assert.equal(
      await fetchRaw('/@openlist/api/fs/get', forwarded),
      `https://files.example.com:8443/@openlist/d/local/pub/fox.txt?sign=${sign}`,
    );
    assert.equal(
      await fetchRaw('/api/fs/get', { host: 'ferry.lan:5244' }),
      `http://ferry.lan:5244/d/local/pub/fox.txt?sign=${sign}`,
    );
    // Forwarded values that are no host[:port] or scheme are ignored, never pasted into the URL.
    for (const bad of [
      'evil.com/path',
      'evil.com x',
      'user@evil.com',
      'evil.com:99999',
      'evil.com?x=1',
      '[::1',
    ]) {
      const raw = await fetchRaw('/api/fs/get', {
        host: 'ferry.lan',
        'x-forwarded-host': bad,
        'x-forwarded-proto': 'javascript',
      });
      assert.equal(raw, `http://ferry.lan/d/local/pub/fox.txt?sign=${sign}`, bad);
    }
    const v6 = await fetchRaw('/api/fs/get', { 'x-forwarded-host': '[::1]:8080' });
    assert.ok(v6.startsWith('http://[::1]:8080/d/'), v6);
    // The text preview fetches raw_url as it is: no token needed.
    const raw = new URL(await fetchRaw('/@openlist/api/fs/get', forwarded));
    const res = await get(`${raw.pathname}${raw.search}`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, BODY);
  });

  it("a general user's signs are over its absolute paths and open only what it could see", async () => {
    const sign = await signOf('/local/homes/u', 'own.txt', userToken, '/');
    // The web UI builds /d + base_path + dir + name + ?sign=.
    const res = await get(`/d/local/homes/u/own.txt?sign=${sign}`);
    assert.equal(res.body, 'own bytes');
    const got = await h.json<GetData>('POST', '/api/fs/get', {
      token: userToken,
      body: { path: '/own.txt' },
    });
    assert.equal(new URL(got.data.raw_url).pathname, '/d/local/homes/u/own.txt');
    // Its sign does not open a file outside its tree under the same relative name.
    await writeFile(join(files, 'own.txt'), 'admin’s own');
    for (const url of [`/d/own.txt?sign=${sign}`, `/d/local/own.txt?sign=${sign}`]) {
      const other = await get(url);
      assert.equal(other.statusCode, 401, url);
    }
    // With its token and no sign, paths stay relative to its base path.
    const relative = await h.call('GET', '/d/own.txt', { token: userToken });
    assert.equal(relative.body, 'own bytes');
    const climb = await h.call('GET', '/d/..%2fother.txt', { token: userToken });
    assert.ok(climb.statusCode >= 400 && climb.statusCode < 500 && !climb.body.includes('OTHER'));
  });

  it('/p shows HTML sandboxed, so a stored page cannot reach the web UI’s token', async () => {
    const sign = await signOf('/local/pub', 'page.html');
    const res = await get(`/p/local/pub/page.html?sign=${sign}`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(res.headers['content-security-policy'], 'sandbox');
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
  });

  it('archive/meta gives the archive its link and sign apart; /d refuses single entries (inner)', async () => {
    const zip = new ZipWriter(new BlobWriter('application/zip'));
    await zip.add('notes.txt', new TextReader('inside'));
    await zip.add('pics/cat.png', new TextReader('png'));
    const blob = await zip.close();
    const bytes = Buffer.from(await blob.arrayBuffer());
    await writeFile(join(files, 'pub', 'box.zip'), bytes);
    const meta = await h.json<{
      raw_url: string;
      sign: string;
      content: (Obj & { type: number; children?: (Obj & { type: number })[] })[];
    }>('POST', '/@openlist/api/fs/archive/meta', {
      token: h.adminToken,
      body: { path: '/local/pub/box.zip', archive_pass: '' },
      headers: { 'x-forwarded-host': 'files.example.com', 'x-forwarded-proto': 'https' },
    });
    assert.equal(meta.code, 200, meta.message);
    assert.equal(meta.data.raw_url, 'https://files.example.com/@openlist/d/local/pub/box.zip');
    assert.equal(meta.data.sign, await signOf('/local/pub', 'box.zip'));
    const types = Object.fromEntries(meta.data.content.map((e) => [e.name, e.type]));
    assert.deepEqual(types, { 'notes.txt': 4, pics: 1 });
    assert.equal(meta.data.content.find((e) => e.name === 'pics')?.children?.[0]?.type, 5);
    const whole = await get(`/@openlist/d/local/pub/box.zip?sign=${meta.data.sign}`);
    assert.equal(whole.statusCode, 200);
    assert.deepEqual(whole.rawPayload, bytes);
    // What the UI's archive preview requests for one entry: refused clearly, not the whole zip.
    const inner = await get(`/@openlist/d/local/pub/box.zip?inner=%2Fnotes.txt&pass=&sign=${meta.data.sign}`);
    assert.equal(inner.statusCode, 400);
    assert.match(JSON.parse(inner.body).message, /single entries of an archive/);
  });
});
