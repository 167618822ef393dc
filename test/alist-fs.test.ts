import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from './helpers/harness.ts';

/**
 * AList's read-only file API as the OpenList web UI and the SDKs use it: `fs/get` of `/` and of
 * folders only mounts make (the UI calls fs/get before fs/list), `fs/dirs` (the folder picker),
 * file types by extension (the UI's previews), the codes of a missing path in both flavours, and
 * a general user confined to its base path.
 */

interface Obj {
  name: string;
  size: number;
  is_dir: boolean;
  modified: string;
  sign: string;
  type: number;
  hashinfo: string;
}
interface GetData extends Obj {
  raw_url: string;
  provider: string;
  related: Obj[] | null;
}
interface ListData {
  content: Obj[];
  total: number;
  provider: string;
}
type Dir = { name: string; modified: string };

describe('AList file API: fs/get, fs/list, fs/dirs', () => {
  let h: Harness;
  let files: string;
  const post = <T>(url: string, body: unknown, token: string | null = h.adminToken) =>
    h.json<T>('POST', url, { token, body });

  before(async () => {
    h = await startHarness();
    files = join(h.dataDir, 'files');
    await mkdir(join(files, 'types', 'folder.mp4'), { recursive: true });
    for (const name of ['x.txt', 'x.MP4', 'x.flac', 'x.png', 'x.bin', 'x.JPEG', 'noext', '.gitignore'])
      await writeFile(join(files, 'types', name), name);
    await mkdir(join(files, 'homes', 'u', 'docs'), { recursive: true });
    await writeFile(join(files, 'homes', 'u', 'mine.txt'), 'mine');
    await writeFile(join(files, 'homes', 'secret.txt'), 'not yours');
    // A storage at /a/b makes /a a folder that only exists because of the mount.
    await mkdir(join(h.dataDir, 'ab', 'inner'), { recursive: true });
    await writeFile(join(h.dataDir, 'ab', 'f.txt'), 'in ab');
    const created = await post('/api/admin/storage/create', {
      mount_path: '/a/b',
      driver: 'Local',
      addition: JSON.stringify({ root_folder_path: join(h.dataDir, 'ab') }),
    });
    assert.equal(created.code, 200, created.message);
  });
  after(() => h.close());

  it('fs/get of / and of a folder only mounts make answers a folder, in both flavours', async () => {
    for (const prefix of ['', '/@openlist']) {
      const root = await post<GetData>(`${prefix}/api/fs/get`, { path: '/' });
      assert.equal(root.code, 200, `${prefix} get /: ${root.message}`);
      assert.equal(root.data.is_dir, true);
      assert.equal(root.data.name, 'root');
      assert.equal(root.data.type, 1);
      assert.equal(root.data.sign, '');
      assert.equal(root.data.raw_url, '');
      assert.equal(root.data.provider, 'unknown');
      assert.ok(!Number.isNaN(Date.parse(root.data.modified)));

      const a = await post<GetData>(`${prefix}/api/fs/get`, { path: '/a' });
      assert.equal(a.code, 200, `${prefix} get /a: ${a.message}`);
      assert.deepEqual([a.data.name, a.data.is_dir, a.data.type, a.data.provider], ['a', true, 1, 'unknown']);

      const mountRoot = await post<GetData>(`${prefix}/api/fs/get`, { path: '/a/b' });
      assert.equal(mountRoot.code, 200, mountRoot.message);
      assert.deepEqual([mountRoot.data.name, mountRoot.data.is_dir], ['b', true]);
      assert.equal(mountRoot.data.provider, 'Local');
    }
    const listA = await post<ListData>('/api/fs/list', { path: '/a' });
    assert.deepEqual(
      listA.data.content.map((e) => [e.name, e.is_dir]),
      [['b', true]],
    );
    const listRoot = await post<ListData>('/api/fs/list', { path: '/' });
    assert.deepEqual(listRoot.data.content.map((e) => e.name).sort(), ['a', 'local']);
  });

  it('a missing path: 404 in the seed flavour, 500 "object not found" under /@openlist', async () => {
    for (const path of ['/local/nope.txt', '/nowhere', '/a/nope', '/a/b/nope/deeper']) {
      for (const route of ['/api/fs/get', '/api/fs/list', '/api/fs/dirs']) {
        const seed = await post(route, { path });
        assert.equal(seed.code, 404, `seed ${route} ${path}: ${seed.message}`);
        assert.equal(seed.data, null);
        const current = await post(`/@openlist${route}`, { path });
        assert.deepEqual(current, { code: 500, message: 'object not found', data: null }, `${route} ${path}`);
      }
    }
    // Other errors keep their codes under /@openlist: traversal is still refused as such.
    const out = await post('/@openlist/api/fs/get', { path: '/local/../../etc/passwd' });
    assert.equal(out.code, 403, out.message);
  });

  it('types files by extension as AList does, folders as 1, in fs/list and fs/get', async () => {
    const list = await post<ListData>('/api/fs/list', { path: '/local/types' });
    assert.equal(list.code, 200, list.message);
    const types = Object.fromEntries(list.data.content.map((e) => [e.name, e.type]));
    assert.deepEqual(types, {
      'x.txt': 4,
      'x.MP4': 2,
      'x.flac': 3,
      'x.png': 5,
      'x.JPEG': 5,
      'x.bin': 0,
      noext: 0,
      '.gitignore': 4,
      'folder.mp4': 1,
    });
    for (const e of list.data.content) {
      assert.equal(e.sign === '', e.is_dir, `${e.name}: files are signed, folders not`);
      assert.equal(e.hashinfo, 'null');
    }
    for (const [name, type] of [
      ['x.MP4', 2],
      ['x.flac', 3],
      ['folder.mp4', 1],
    ] as const) {
      const got = await post<GetData>('/api/fs/get', { path: `/local/types/${name}` });
      assert.equal(got.data.type, type, name);
    }
  });

  it('fs/get of a video names its related files (subtitles), each signed', async () => {
    await mkdir(join(files, 'film'), { recursive: true });
    for (const name of ['movie.mp4', 'movie.srt', 'movie.en.ass', 'other.srt'])
      await writeFile(join(files, 'film', name), name);
    const got = await post<GetData>('/api/fs/get', { path: '/local/film/movie.mp4' });
    assert.equal(got.code, 200, got.message);
    assert.deepEqual(got.data.related?.map((e) => e.name).sort(), ['movie.en.ass', 'movie.srt']);
    assert.ok(got.data.related?.every((e) => e.sign !== '' && e.type === 4));
    const alone = await post<GetData>('/api/fs/get', { path: '/local/film/other.srt' });
    assert.equal(alone.data.related, null);
    // Only videos look for related files (nothing else reads them).
    const subtitle = await post<GetData>('/api/fs/get', { path: '/local/film/movie.srt' });
    assert.equal(subtitle.data.related, null);
  });

  it('fs/dirs lists folders only, mounts included, at /, in a mount and below a virtual folder', async () => {
    const root = await post<Dir[]>('/api/fs/dirs', { path: '/', password: '', force_root: false });
    assert.equal(root.code, 200, root.message);
    assert.deepEqual(root.data.map((d) => d.name).sort(), ['a', 'local']);
    for (const d of root.data) assert.ok(!Number.isNaN(Date.parse(d.modified)), d.modified);

    const local = await post<Dir[]>('/api/fs/dirs', { path: '/local' });
    assert.deepEqual(local.data.map((d) => d.name).sort(), ['film', 'homes', 'types']);
    assert.deepEqual(Object.keys(local.data[0] ?? {}).sort(), ['modified', 'name']);

    const types = await post<Dir[]>('/api/fs/dirs', { path: '/local/types' });
    assert.deepEqual(
      types.data.map((d) => d.name),
      ['folder.mp4'],
    );
    const a = await post<Dir[]>('/@openlist/api/fs/dirs', { path: '/a' });
    assert.deepEqual(
      a.data.map((d) => d.name),
      ['b'],
    );
    const inB = await post<Dir[]>('/api/fs/dirs', { path: '/a/b' });
    assert.deepEqual(
      inB.data.map((d) => d.name),
      ['inner'],
    );
    const file = await post('/api/fs/dirs', { path: '/local/types/x.txt' });
    assert.notEqual(file.code, 200, 'a file has no folders to pick');
  });

  it('a general user sees only its own tree in fs/get, fs/list and fs/dirs; force_root is for admins', async () => {
    const u = await h.user('u', { base_path: '/local/homes/u' });
    const root = await post<GetData>('/api/fs/get', { path: '/' }, u);
    assert.equal(root.code, 200, root.message);
    assert.deepEqual([root.data.name, root.data.is_dir], ['u', true]);
    const dirs = await post<Dir[]>('/api/fs/dirs', { path: '/' }, u);
    assert.deepEqual(
      dirs.data.map((d) => d.name),
      ['docs'],
    );
    const list = await post<ListData>('/api/fs/list', { path: '/' }, u);
    assert.deepEqual(list.data.content.map((e) => e.name).sort(), ['docs', 'mine.txt']);
    const mine = await post<GetData>('/api/fs/get', { path: '/mine.txt' }, u);
    assert.equal(mine.code, 200, mine.message);
    // Its view ends at its base path: nothing above is reachable, nor does it show.
    for (const path of ['/..', '/../secret.txt', '/../../types']) {
      for (const route of ['/api/fs/get', '/api/fs/dirs', '/api/fs/list']) {
        const res = await h.call('POST', route, { token: u, body: { path } });
        const env = JSON.parse(res.body);
        assert.ok([400, 403].includes(env.code), `${route} ${path} → ${env.code}`);
        assert.equal(env.data, null, `${route} ${path} answers nothing about the tree`);
      }
    }
    // A path that looks like the tree above is looked up below the base path, so it is missing.
    const lookalike = await post('/api/fs/get', { path: '/local/homes/secret.txt' }, u);
    assert.equal(lookalike.code, 404);
    const forced = await post('/api/fs/dirs', { path: '/', force_root: true }, u);
    assert.deepEqual([forced.code, forced.data], [403, null]);
    const adminForced = await post<Dir[]>('/api/fs/dirs', { path: '/local/homes', force_root: true });
    assert.deepEqual(
      adminForced.data.map((d) => d.name),
      ['u'],
    );
  });

  it('refuses bodies of the wrong shape with a clear error, never a 500', async () => {
    for (const body of [{ path: 42 }, { path: ['/'] }, [], 'x']) {
      for (const route of ['/api/fs/dirs', '/@openlist/api/fs/get', '/@openlist/api/fs/dirs']) {
        const res = await h.call('POST', route, {
          token: h.adminToken,
          body,
          headers: typeof body === 'string' ? { 'content-type': 'application/json' } : {},
        });
        assert.equal(res.statusCode, 200, route);
        const env = JSON.parse(res.body);
        assert.ok(env.code >= 400 && env.code < 500, `${route} ${JSON.stringify(body)} → ${env.code}`);
      }
    }
  });
});
