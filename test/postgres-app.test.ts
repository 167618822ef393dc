import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from './helpers/databases.ts';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';

/** The whole app on PostgreSQL (the multi-node store): uploads, copies and all three task views. */
const postgres = (await testDatabases()).find((d) => d.dialect === 'postgres');

describe('the app on PostgreSQL', { skip: postgres ? false : 'PostgreSQL unreachable (see above)' }, () => {
  let h: Harness;
  let drop: () => Promise<void>;
  before(async () => {
    if (!postgres) return;
    const db = await postgres.create();
    drop = db.drop;
    h = await startHarness({ databaseUrl: db.url });
  });
  after(async () => {
    await h?.close();
    await drop?.();
  });

  it('uploads, copies and shows the same tasks through AList, efile and KooDrive', async () => {
    const put = await h.json<{ task: { id: string } }>('PUT', '/api/fs/put', {
      token: h.adminToken,
      body: Buffer.from('on postgres'),
      headers: {
        'file-path': encodeURIComponent('/local/pg/a.txt'),
        'as-task': 'true',
        'content-type': 'application/octet-stream',
      },
    });
    assert.equal(put.code, 200, put.message);
    await waitFor(async () => {
      const r = await h.json<{ state: string }[]>('POST', `/api/task/upload/info?tid=${put.data.task.id}`, {
        token: h.adminToken,
      });
      return r.data[0]?.state === 'succeeded' ? true : undefined;
    });
    await mkdir(join(h.dataDir, 'files', 'pg', 'many'), { recursive: true });
    for (let i = 0; i < 20; i++)
      await writeFile(join(h.dataDir, 'files', 'pg', 'many', `f${i}`), `file ${i}`);
    const copy = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: '/local/pg', dst_dir: '/local/pg-copy', names: ['a.txt', 'many'] },
    });
    assert.equal(copy.code, 200, copy.message);
    const ids = copy.data.tasks.map((t) => t.id);
    await waitFor(async () => {
      const r = await h.json<{ id: string; state: string }[]>('GET', '/api/task/copy/done', {
        token: h.adminToken,
      });
      return ids.every((id) => r.data.some((t) => t.id === id && t.state === 'succeeded')) ? true : undefined;
    });
    assert.equal(await readFile(join(h.dataDir, 'files', 'pg-copy', 'a.txt'), 'utf8'), 'on postgres');
    assert.equal(await readFile(join(h.dataDir, 'files', 'pg-copy', 'many', 'f19'), 'utf8'), 'file 19');

    const efile = await h.json<{ status: string; totalNum: number }[]>(
      'POST',
      '/efile/openapi/v2/file/task/list',
      {
        headers: { token: h.adminToken },
        body: { taskIds: ids },
      },
    );
    assert.deepEqual(
      efile.data.map((t) => [t.status, t.totalNum]),
      [
        ['complete', 1],
        ['complete', 20],
      ],
    );
    const seen: string[] = [];
    let cursor = '';
    for (;;) {
      const page = await h.call(
        'GET',
        `/koodrive/ose/v1/task/list?pageSize=1${cursor ? `&pageCursor=${cursor}` : ''}`,
        {
          headers: { authorization: `Bearer ${h.adminToken}` },
        },
      );
      const body = JSON.parse(page.body);
      seen.push(...body.taskList.map((t: { taskId: string }) => t.taskId));
      if (!body.nextCursor) break;
      cursor = body.nextCursor;
    }
    assert.deepEqual(seen, [put.data.task.id, ...ids]);
  });
});
