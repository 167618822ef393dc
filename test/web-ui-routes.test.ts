import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findWebUi, type WebUiFiles } from '../src/api/web-ui-page.ts';
import { type Harness, startHarness } from './helpers/harness.ts';

/**
 * The web UI as ferry serves it, through `inject`: index.html filled in for `/` and client
 * routes, the frontend's files with their caching, the JSON 404 kept for the APIs' paths, the
 * manifest, and the UI switched off. Needs the frontend `npm install` fetches
 * (scripts/fetch-web-ui.mjs); without it these tests fail rather than skip.
 */

interface Item {
  key: string;
  value: string;
  type: string;
  group: number;
  flag: number;
  options: string;
}

describe('the web UI routes', () => {
  let h: Harness;
  let files: WebUiFiles;

  before(async () => {
    const found = await findWebUi();
    assert.ok(found, 'the web UI is not installed: run npm install (scripts/fetch-web-ui.mjs)');
    files = found;
    h = await startHarness();
  });
  after(async () => {
    await h?.close();
  });

  it('answers / and client routes with index.html, its config pointing the UI at /@openlist', async () => {
    for (const path of ['/', '/@login', '/local/some/folder', '/@manage/settings/site?x=1']) {
      const res = await h.call('GET', path);
      assert.equal(res.statusCode, 200, path);
      assert.match(String(res.headers['content-type']), /^text\/html/, path);
      assert.equal(res.headers['cache-control'], 'no-cache', path);
      assert.match(res.body, /api: location\.origin \+ "\/@openlist"/, path);
      assert.match(res.body, /base_path: '\/'/, path);
      assert.match(res.body, /cdn: ''/, path);
      assert.match(res.body, /main_color: "#1890ff"/, path);
      assert.match(res.body, /<title>ferry<\/title>/, path);
      assert.doesNotMatch(res.body, /undefined,/, `${path}: a placeholder left unfilled`);
    }
    const head = await h.call('HEAD', '/@login');
    assert.equal(head.statusCode, 200);
    assert.equal(head.body, '');
    assert.ok(Number(head.headers['content-length']) > 1000);
  });

  it('serves the hashed assets index.html loads, cached as immutable', async () => {
    const script = files.rawIndex.match(/"src":"(\/assets\/index-[\w-]+\.js)"/)?.[1];
    assert.ok(script, 'index.html names its entry script');
    const res = await h.call('GET', script);
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /javascript/);
    assert.match(String(res.headers['cache-control']), /max-age=31536000/);
    assert.match(String(res.headers['cache-control']), /immutable/);
    assert.equal(res.body, await readFile(join(files.dist, script), 'utf8'));
    const head = await h.call('HEAD', script);
    assert.equal(head.statusCode, 200);
    assert.equal(head.body, '');
    // Not hashed: cached, not forever.
    const sw = await h.call('GET', '/streamer/sw.js');
    assert.equal(sw.statusCode, 200);
    assert.doesNotMatch(String(sw.headers['cache-control']), /immutable/);
  });

  it('keeps the JSON 404 for the APIs, downloads and missing files, and for other methods', async () => {
    for (const [method, path] of [
      ['GET', '/api/nope'],
      ['GET', '/api'],
      ['GET', '/efile/nope'],
      ['GET', '/koodrive/nope'],
      ['GET', '/@openlist/nope'],
      ['GET', '/@openlist/api/nope'],
      ['GET', '/assets/missing-file.js'],
      ['GET', '/static/'],
      ['POST', '/@login'],
      ['DELETE', '/'],
    ] as const) {
      const res = await h.call(method, path);
      assert.equal(res.statusCode, 404, `${method} ${path}`);
      assert.equal(JSON.parse(res.body).code, 404, `${method} ${path}`);
    }
    // The download routes answer for themselves (here: no token, no sign), never with the page.
    for (const path of ['/d/nope', '/p/nope', '/@openlist/d/nope', '/@openlist/p/nope']) {
      const res = await h.call('GET', path);
      assert.equal(res.statusCode, 401, path);
      assert.equal(JSON.parse(res.body).code, 401, path);
    }
  });

  it('refuses paths that climb out of the UI folders', async () => {
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = h.app.server.address() as { port: number };
    for (const path of ['/assets/%2e%2e/%2e%2e/package.json', '/static/..%2f..%2fpackage.json']) {
      // Sent as is: `fetch` and `inject` would resolve the dots before sending.
      const res = await rawGet(port, path);
      assert.ok(res.status === 403 || res.status === 404, `${path}: HTTP ${res.status}`);
      assert.doesNotMatch(res.body, /"name": "ferry"/);
    }
  });

  it('serves a manifest named after the site, and the logo it names', async () => {
    const manifest = JSON.parse((await h.call('GET', '/manifest.json')).body);
    assert.equal(manifest.name, 'ferry');
    assert.equal(manifest.start_url, '/');
    const logo = await h.call('GET', manifest.icons[0].src);
    assert.equal(logo.statusCode, 200);
    assert.equal(logo.headers['content-type'], 'image/svg+xml');
  });

  it('answers the public settings the UI reads, with and without a token, on both flavours', async () => {
    for (const path of ['/api/public/settings', '/@openlist/api/public/settings']) {
      for (const token of [null, h.adminToken]) {
        const res = await h.json<Record<string, string>>('GET', path, { token });
        assert.equal(res.code, 200);
        assert.equal(res.data.site_title, 'ferry');
        assert.equal(res.data.multipart_enabled, 'false');
        assert.equal(res.data.sso_login_enabled, 'false');
        assert.equal(res.data.ldap_login_enabled, 'false');
        assert.equal(res.data.search_index, 'none');
        assert.equal(res.data.pagination_type, 'all');
        assert.equal(res.data.main_color, '#1890ff');
        assert.match(res.data.version ?? '', /^ferry /);
        // Admins' settings stay private.
        assert.equal(res.data.copy_task_threads_num, undefined);
        assert.equal(res.data.customize_head, undefined);
      }
    }
    const ext = await h.json<string[]>('GET', '/@openlist/api/public/archive_extensions');
    assert.equal(ext.code, 200);
    for (const e of ['.zip', '.tar.gz', '.7z']) assert.ok(ext.data.includes(e), e);
  });

  it('applies a saved site title and colour to index.html and the manifest at once', async () => {
    const list = await h.json<Item[]>('GET', '/api/admin/setting/list?group=2', { token: h.adminToken });
    const style = list.data.map((i) => (i.key === 'main_color' ? { ...i, value: '#ff5500' } : i));
    const site = (await h.json<Item[]>('GET', '/api/admin/setting/list?group=1', { token: h.adminToken }))
      .data;
    const saved = await h.json('POST', '/api/admin/setting/save', {
      token: h.adminToken,
      body: [
        ...site.map((i) => (i.key === 'site_title' ? { ...i, value: 'Harbour <b>&</b>' } : i)),
        ...style,
      ],
    });
    assert.equal(saved.code, 200, saved.message);
    const page = (await h.call('GET', '/local')).body;
    assert.match(page, /<title>Harbour &#60;b&#62;&#38;&#60;\/b&#62;<\/title>/);
    assert.match(page, /main_color: "#ff5500"/);
    assert.equal(JSON.parse((await h.call('GET', '/manifest.json')).body).name, 'Harbour <b>&</b>');
    const pub = await h.json<Record<string, string>>('GET', '/api/public/settings');
    assert.equal(pub.data.site_title, 'Harbour <b>&</b>');
  });

  it('keeps settings from breaking out of the script and title they sit in', async () => {
    const res = await h.json('POST', '/api/admin/setting/save', {
      token: h.adminToken,
      body: [
        { key: 'main_color', value: '"</script><script>alert(1)</script>' },
        { key: 'site_title', value: '</title><script>alert(2)</script>' },
      ],
    });
    assert.equal(res.code, 200);
    const page = (await h.call('GET', '/')).body;
    assert.doesNotMatch(page, /alert\(1\)<\/script>/);
    assert.doesNotMatch(page, /<script>alert\(2\)/);
    await h.json('POST', '/api/admin/setting/delete?key=main_color', { token: h.adminToken });
    await h.json('POST', '/api/admin/setting/delete?key=site_title', { token: h.adminToken });
    assert.match((await h.call('GET', '/')).body, /<title>ferry<\/title>/);
  });

  it('puts customize_head into pages, but not into /@manage ones', async () => {
    const res = await h.json('POST', '/api/admin/setting/save', {
      token: h.adminToken,
      body: [{ key: 'customize_head', value: '<meta name="ferry-test" content="1">' }],
    });
    assert.equal(res.code, 200);
    assert.match((await h.call('GET', '/local')).body, /name="ferry-test"/);
    assert.doesNotMatch((await h.call('GET', '/@manage/settings/global')).body, /name="ferry-test"/);
  });
});

describe('the web UI switched off', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ webUi: false });
  });
  after(async () => {
    await h?.close();
  });

  it('serves no page, file or manifest, and the APIs as before', async () => {
    for (const path of ['/', '/@login', '/manifest.json', '/assets/x.js', '/ferry-logo.svg']) {
      const res = await h.call('GET', path);
      assert.equal(res.statusCode, 404, path);
      assert.equal(JSON.parse(res.body).code, 404, path);
    }
    const settings = await h.json<Record<string, string>>('GET', '/api/public/settings');
    assert.equal(settings.data.site_title, 'ferry');
  });
});

/** GET `path` exactly as written (no dot-segment resolution), over a plain socket. */
async function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const { connect } = await import('node:net');
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      text += chunk;
    });
    socket.on('end', () => resolve({ status: Number(text.split(' ')[1]), body: text }));
    socket.on('error', reject);
  });
}
