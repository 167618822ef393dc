import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';

/**
 * AList clients send an uploaded file's modification time as `Last-Modified` (ms since the epoch)
 * on `fs/put` and `fs/form`; the stored file keeps it, and `fs/get` and `fs/list` show it. On the
 * Local driver by both ways an upload is placed (a link of the spool file, or a copy of it to
 * another file system), and on SFTP.
 */

const WHEN = Date.UTC(2021, 4, 17, 8, 30, 15, 250);

interface Obj {
  name: string;
  modified: string;
}

describe('an upload’s Last-Modified', () => {
  let h: Harness;
  /** A Local storage on another file system than the data directory (tmpfs): the copy path. */
  let shm: string;
  let sftp: RcloneServer | undefined;
  const available = rcloneAvailable();

  before(async () => {
    h = await startHarness();
    shm = await mkdtemp('/dev/shm/ferry-last-modified-');
    const mount = async (mount_path: string, driver: string, addition: Record<string, unknown>) => {
      const res = await h.json('POST', '/api/admin/storage/create', {
        token: h.adminToken,
        body: { mount_path, driver, addition: JSON.stringify(addition) },
      });
      assert.equal(res.code, 200, res.message);
    };
    await mount('/shm', 'Local', { root_folder_path: shm });
    if (available) {
      sftp = await startRclone('sftp');
      await mount('/sftp', 'SFTP', {
        address: sftp.address,
        username: sftp.username,
        password: sftp.password,
        root_folder_path: '/',
      });
    }
  });
  after(async () => {
    await h?.close();
    await sftp?.close();
    if (shm) await rm(shm, { recursive: true, force: true });
  });

  const upload = async (
    route: 'put' | 'form',
    path: string,
    headers: Record<string, string>,
  ): Promise<{ code: number; message: string; data: { task?: { id: string } } | null }> => {
    const common = { authorization: h.adminToken, 'file-path': encodeURIComponent(path), ...headers };
    if (route === 'put') {
      return (
        await h.app.inject({
          method: 'PUT',
          url: '/api/fs/put',
          headers: { ...common, 'content-type': 'application/octet-stream' },
          payload: Buffer.from(`bytes of ${path}`),
        })
      ).json();
    }
    const form = new FormData();
    form.append('file', new Blob([`bytes of ${path}`]), 'f.bin');
    const request = new Request('http://ferry/', { method: 'PUT', body: form });
    return (
      await h.app.inject({
        method: 'PUT',
        url: '/api/fs/form',
        headers: { ...common, 'content-type': request.headers.get('content-type') as string },
        payload: Buffer.from(await request.arrayBuffer()),
      })
    ).json();
  };
  /** Upload, wait for the task when it is one, and return what fs/get shows. */
  const uploaded = async (route: 'put' | 'form', path: string, headers: Record<string, string>) => {
    const res = await upload(route, path, headers);
    assert.equal(res.code, 200, `${path}: ${res.message}`);
    const id = res.data?.task?.id;
    if (id) assert.equal((await h.finished('upload', id)).state, 'succeeded');
    const got = await h.json<Obj>('POST', '/api/fs/get', { token: h.adminToken, body: { path } });
    assert.equal(got.code, 200, got.message);
    return got.data;
  };

  it('keeps it on Local, placed by link or by copy, direct or as a task, new or overwritten', async () => {
    const expected = new Date(WHEN).toISOString();
    for (const [route, path, asTask] of [
      ['put', '/local/lm/put.bin', 'false'],
      ['form', '/local/lm/form.bin', 'true'],
      ['put', '/shm/lm/put.bin', 'true'],
      ['form', '/shm/lm/form.bin', 'false'],
      ['put', '/local/lm/put.bin', 'true'], // overwritten
    ] as const) {
      const got = await uploaded(route, path, { 'last-modified': String(WHEN), 'as-task': asTask });
      assert.equal(got.modified, expected, `${route} ${path}`);
    }
    const files = await stat(join(h.dataDir, 'files', 'lm', 'form.bin'));
    assert.equal(Math.round(files.mtimeMs), WHEN);
    assert.equal(Math.round((await stat(join(shm, 'lm', 'put.bin'))).mtimeMs), WHEN);
    const list = await h.json<{ content: Obj[] }>('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/local/lm' },
    });
    assert.deepEqual(
      list.data.content.map((o) => [o.name, o.modified]),
      [
        ['form.bin', expected],
        ['put.bin', expected],
      ],
    );
  });

  it('ignores a value that is not a time in ms, as AList does: the file gets the time it is written', async () => {
    for (const bad of [
      'yesterday',
      '-5',
      '1.5e12',
      'Tue, 18 May 2021 08:30:15 GMT',
      '',
      '9'.repeat(30),
      '4294967296000',
    ]) {
      const before = Date.now() - 2000;
      const got = await uploaded('put', '/local/lm/bad.bin', { 'last-modified': bad });
      const at = Date.parse(got.modified);
      assert.ok(at >= before && at <= Date.now() + 2000, `${JSON.stringify(bad)}: ${got.modified}`);
    }
  });

  it('keeps it on SFTP, to the second', { skip: !available && 'rclone is not installed' }, async () => {
    for (const route of ['put', 'form'] as const) {
      const path = `/sftp/lm/${route}.bin`;
      const got = await uploaded(route, path, { 'last-modified': String(WHEN), 'as-task': 'true' });
      assert.equal(got.modified, new Date(Math.floor(WHEN / 1000) * 1000).toISOString(), path);
      const onDisk = await waitFor(async () =>
        stat(join(sftp!.root, 'lm', `${route}.bin`)).catch(() => undefined),
      );
      assert.equal(Math.floor(onDisk.mtimeMs / 1000), Math.floor(WHEN / 1000));
    }
  });
});
