import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';

/**
 * Storage management as the OpenList UI's Storages page and Add Storage form use it, and as the
 * SDKs read it: the driver descriptions, a storage created from exactly what the form posts,
 * what a storage reads back as, enable/disable, load_all.
 */

interface Item {
  name: string;
  type: string;
  default: string;
  options: string;
  required: boolean;
  help: string;
}
interface Info {
  common: Item[];
  additional: Item[];
  config: Record<string, unknown>;
}
type Storage = Record<string, unknown> & { id: number; mount_path: string; addition: string; status: string };

/**
 * AList's storage fields and their JSON types (`model.Storage` in OpenList; alist-sdk's
 * `Storage` model requires the first ones, with these types).
 */
const STORAGE_FIELDS: Record<string, 'number' | 'string' | 'boolean'> = {
  id: 'number',
  mount_path: 'string',
  order: 'number',
  driver: 'string',
  cache_expiration: 'number',
  status: 'string',
  addition: 'string',
  remark: 'string',
  modified: 'string',
  disabled: 'boolean',
  enable_sign: 'boolean',
  order_by: 'string',
  order_direction: 'string',
  extract_folder: 'string',
  web_proxy: 'boolean',
  webdav_policy: 'string',
  down_proxy_url: 'string',
  custom_cache_policies: 'string',
  disable_index: 'boolean',
  proxy_range: 'boolean',
  disable_proxy_sign: 'boolean',
};

/** The OpenList UI's GetDefaultValue: a field's starting value from its type and default. */
function uiDefault(item: Item): unknown {
  if (item.type === 'bool') return item.default === 'true';
  if (item.type === 'number') return item.default ? Number.parseInt(item.default, 10) : 0;
  return item.default;
}

describe('AList storages and drivers', () => {
  let h: Harness;
  let userToken: string;
  let root: string;

  const admin = <T>(method: 'GET' | 'POST', url: string, body?: unknown) =>
    h.json<T>(method, url, { token: h.adminToken, ...(body !== undefined && { body }) });
  const storages = async () =>
    (await admin<{ content: Storage[]; total: number }>('GET', '/api/admin/storage/list')).data;
  const byPath = async (mountPath: string) => {
    const found = (await storages()).content.find((s) => s.mount_path === mountPath);
    assert.ok(found, `storage ${mountPath}`);
    return found;
  };

  /** Fill the Add Storage form for `driver` as the UI does, then set what the user typed. */
  const formFor = async (
    driver: string,
    typed: Record<string, unknown>,
    addition: Record<string, unknown>,
  ) => {
    const info = await admin<Info>('GET', `/api/admin/driver/info?driver=${driver}`);
    assert.equal(info.code, 200, info.message);
    const storage: Record<string, unknown> = {};
    for (const item of info.data.common) storage[item.name] = uiDefault(item);
    const fields: Record<string, unknown> = {};
    for (const item of info.data.additional) fields[item.name] = uiDefault(item);
    return { ...storage, ...typed, driver, addition: JSON.stringify({ ...fields, ...addition }) };
  };

  before(async () => {
    h = await startHarness();
    userToken = await h.user('erin');
    root = join(h.dataDir, 'form-root');
    await mkdir(root, { recursive: true });
    await writeFile(join(root, 'hello.txt'), 'hello from the form');
  });
  after(async () => {
    await h?.close();
  });

  it('lists driver names, and each driver in AList driver-info shape', async () => {
    const names = await admin<string[]>('GET', '/api/admin/driver/names');
    assert.equal(names.code, 200);
    assert.deepEqual([...names.data].sort(), ['Local', 'S3', 'SFTP', 'WebDav']);
    const list = await admin<Record<string, Info>>('GET', '/api/admin/driver/list');
    assert.deepEqual(Object.keys(list.data).sort(), [...names.data].sort());
    for (const [name, info] of Object.entries(list.data)) {
      assert.equal(info.config.name, name);
      for (const key of ['local_sort', 'only_proxy', 'no_cache', 'no_upload', 'need_ms'])
        assert.equal(typeof info.config[key], 'boolean', `${name} config.${key}`);
      for (const item of [...info.common, ...info.additional]) {
        assert.deepEqual(Object.keys(item).sort(), [
          'default',
          'help',
          'name',
          'options',
          'required',
          'type',
        ]);
        for (const key of ['name', 'type', 'default', 'options', 'help'] as const)
          assert.equal(typeof item[key], 'string', `${name}.${item.name}.${key}`);
        assert.equal(typeof item.required, 'boolean');
      }
      assert.equal(info.common[0]?.name, 'mount_path');
      // info answers the same as the list's entry.
      const one = await admin<Info>('GET', `/api/admin/driver/info?driver=${name}`);
      assert.deepEqual(one.data, info);
    }
    const missing = await admin('GET', '/api/admin/driver/info?driver=FTP');
    assert.deepEqual(missing, { code: 404, message: 'driver [FTP] not found', data: null });
  });

  it('keeps driver info and storage controls from anyone but an admin', async () => {
    const urls: ['GET' | 'POST', string][] = [
      ['GET', '/api/admin/driver/list'],
      ['GET', '/api/admin/driver/names'],
      ['GET', '/api/admin/driver/info?driver=Local'],
      ['POST', '/api/admin/storage/disable?id=1'],
      ['POST', '/api/admin/storage/enable?id=1'],
      ['POST', '/api/admin/storage/load_all'],
    ];
    for (const [method, url] of urls) {
      const asUser = await h.json(method, url, { token: userToken });
      assert.equal(asUser.code, 403, `${url} as a user`);
      const anonymous = await h.json(method, url);
      assert.notEqual(anonymous.code, 200, `${url} without a token`);
    }
    assert.equal((await byPath('/local')).disabled, false, 'nothing was disabled');
  });

  it('creates a working Local storage from exactly what the Add Storage form posts', async () => {
    const form = await formFor(
      'Local',
      { mount_path: '/form', remark: 'from the form' },
      { root_folder_path: root },
    );
    const created = await admin<{ id: number }>('POST', '/api/admin/storage/create', form);
    assert.equal(created.code, 200, created.message);
    assert.equal(typeof created.data.id, 'number');
    const listed = await h.json<{ content: { name: string }[] }>('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/form' },
    });
    assert.deepEqual(
      listed.data.content.map((e) => e.name),
      ['hello.txt'],
    );
    // An Edit form reads back every field it posted.
    const got = await admin<Storage>('GET', `/api/admin/storage/get?id=${created.data.id}`);
    for (const [key, value] of Object.entries(form)) {
      if (key === 'addition') assert.deepEqual(JSON.parse(got.data.addition), JSON.parse(value as string));
      else assert.deepEqual(got.data[key], value, key);
    }
    assert.equal(got.data.webdav_policy, 'native_proxy', "the form's default was stored");
    assert.equal(got.data.status, 'work');
  });

  it('stores what an Edit saves, including the fields ferry does not act on', async () => {
    const before = await byPath('/form');
    const edited: Record<string, unknown> = {
      ...before,
      order_by: 'size',
      order_direction: 'desc',
      extract_folder: 'front',
      enable_sign: true,
      down_proxy_url: 'https://proxy.example/d',
      cache_expiration: 5,
      web_proxy: true,
      order: 7,
    };
    const res = await admin('POST', '/api/admin/storage/update', edited);
    assert.equal(res.code, 200, res.message);
    const after = await admin<Storage>('GET', `/api/admin/storage/get?id=${before.id}`);
    for (const key of Object.keys(STORAGE_FIELDS)) {
      if (key === 'modified') continue;
      assert.deepEqual(after.data[key], edited[key], key);
    }
    // A field of the wrong type is a clear 400, and nothing changes.
    const bad = await admin('POST', '/api/admin/storage/update', { ...edited, enable_sign: 'yes' });
    assert.equal(bad.code, 400);
    assert.match(bad.message, /enable_sign/);
    assert.equal((await byPath('/form')).enable_sign, true);
  });

  it("lists every storage with AList's fields, each of AList's type", async () => {
    const list = await storages();
    assert.equal(list.total, list.content.length);
    assert.ok(list.content.length >= 2);
    for (const s of list.content) {
      for (const [key, type] of Object.entries(STORAGE_FIELDS))
        assert.equal(typeof s[key], type, `${s.mount_path}.${key}`);
      assert.ok(!Number.isNaN(Date.parse(s.modified as string)));
    }
    // AList pages it with page and per_page.
    const page = await admin<{ content: Storage[]; total: number }>(
      'GET',
      '/api/admin/storage/list?page=2&per_page=1',
    );
    assert.equal(page.data.total, list.total);
    assert.deepEqual(
      page.data.content.map((s) => s.id),
      [list.content[1]?.id],
    );
  });

  it('disable makes a storage unreachable and fails tasks that need it; enable brings it back', async () => {
    const form = await byPath('/form');
    // A copy queued while the storage works, held until the storage is disabled.
    h.core.runner.setLimit('copy', 0);
    const queued = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: '/form', dst_dir: '/local', names: ['hello.txt'] },
    });
    assert.equal(queued.code, 200, queued.message);
    const taskId = queued.data.tasks[0]?.id as string;

    const off = await admin('POST', `/api/admin/storage/disable?id=${form.id}`);
    assert.equal(off.code, 200, off.message);
    const disabled = await byPath('/form');
    assert.equal(disabled.disabled, true);
    assert.equal(disabled.status, 'disabled');
    const again = await admin('POST', `/api/admin/storage/disable?id=${form.id}`);
    assert.equal(again.code, 400);
    assert.match(again.message, /already disabled/);

    // Gone from the root listing; its paths answer that it is disabled.
    const top = await h.json<{ content: { name: string }[] }>('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/' },
    });
    assert.ok(!top.data.content.some((e) => e.name === 'form'));
    const inside = await h.json('POST', '/api/fs/list', { token: h.adminToken, body: { path: '/form' } });
    assert.equal(inside.code, 404);
    assert.match(inside.message, /storage \/form is disabled/);
    const download = await h.call('GET', '/d/form/hello.txt', { token: h.adminToken });
    assert.equal(download.statusCode, 404);

    h.core.runner.setLimit('copy', 4);
    const failed = await h.finished('copy', taskId);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error, /storage \/form is disabled/);

    const on = await admin('POST', `/api/admin/storage/enable?id=${form.id}`);
    assert.equal(on.code, 200, on.message);
    const enabled = await byPath('/form');
    assert.equal(enabled.disabled, false);
    assert.equal(enabled.status, 'work');
    // Everything saved before is still there.
    assert.equal(enabled.order_by, 'size');
    assert.equal(enabled.remark, 'from the form');
    const retried = await h.json('POST', `/api/task/copy/retry?tid=${taskId}`, { token: h.adminToken });
    assert.equal(retried.code, 200, retried.message);
    assert.equal((await h.finished('copy', taskId)).state, 'succeeded');
    assert.equal(await readFile(join(h.dataDir, 'files', 'hello.txt'), 'utf8'), 'hello from the form');
  });

  it('enable starts the driver first: one that cannot start stays disabled, with the reason', async () => {
    const blocker = join(h.dataDir, 'not-a-folder');
    await writeFile(blocker, 'a file where a folder should be');
    const form = await formFor(
      'Local',
      { mount_path: '/broken', disabled: true },
      { root_folder_path: blocker },
    );
    const created = await admin<{ id: number }>('POST', '/api/admin/storage/create', form);
    assert.equal(created.code, 200, created.message);
    const res = await admin('POST', `/api/admin/storage/enable?id=${created.data.id}`);
    assert.equal(res.code, 400);
    assert.match(res.message, /cannot use .*not-a-folder as a Local root/);
    const broken = await byPath('/broken');
    assert.equal(broken.disabled, true);
    assert.equal(broken.status, 'disabled');
    for (const url of ['/api/admin/storage/enable?id=999999', '/api/admin/storage/disable?id=999999']) {
      const missing = await admin('POST', url);
      assert.equal(missing.code, 404, url);
    }
    const noId = await admin('POST', '/api/admin/storage/enable');
    assert.equal(noId.code, 400);
  });

  it('load_all starts every storage again from what is stored', async () => {
    const dir = join(h.dataDir, 'reloaded');
    const form = await formFor('Local', { mount_path: '/reloaded' }, { root_folder_path: dir });
    assert.equal((await admin('POST', '/api/admin/storage/create', form)).code, 200);
    // The folder goes and a file takes its place: the running driver does not notice, a restart does.
    await rm(dir, { recursive: true });
    await writeFile(dir, 'in the way');
    assert.equal((await admin('POST', '/api/admin/storage/load_all')).code, 200);
    const failing = await byPath('/reloaded');
    assert.match(failing.status, /cannot use .*reloaded as a Local root/);
    const refused = await h.json('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/reloaded' },
    });
    assert.match(refused.message, /not working/);
    // Every other storage came back as it was.
    for (const s of (await storages()).content) {
      if (s.mount_path === '/reloaded') continue;
      assert.equal(s.status, s.disabled ? 'disabled' : 'work', s.mount_path);
    }
    await rm(dir);
    assert.equal((await admin('POST', '/api/admin/storage/load_all')).code, 200);
    await waitFor(async () => ((await byPath('/reloaded')).status === 'work' ? true : undefined));
    const listed = await h.json('POST', '/api/fs/list', { token: h.adminToken, body: { path: '/reloaded' } });
    assert.equal(listed.code, 200, listed.message);
  });
});
