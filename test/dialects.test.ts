import assert from 'node:assert/strict';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';

/** SCNet efile and KooDrive task APIs, against a running app, next to the AList dialect. */

const EFILE = '/efile/openapi/v2/file';
const KOO = '/koodrive/ose/v1/task';

const EFILE_FIELDS = [
  'taskId',
  'userId',
  'userName',
  'clusterUserName',
  'sourcePath',
  'targetPath',
  'duplicateHandleType',
  'clusterId',
  'clusterName',
  'operationType',
  'synchronousExecution',
  'status',
  'errorCode',
  'errorMsg',
  'totalSize',
  'totalNum',
  'processedSize',
  'processedNum',
  'progress',
  'submitTime',
  'startTime',
  'updateTime',
];
const KOO_FIELDS = [
  'taskId',
  'taskName',
  'taskType',
  'tenantId',
  'userId',
  'status',
  'initParams',
  'locale',
  'resultCode',
  'createTime',
  'startTime',
  'endTime',
];
const EFILE_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

type Json = { code: string; msg: string; data: Record<string, unknown>[] | null };

describe('SCNet efile and KooDrive dialects', () => {
  let h: Harness;
  let files: string;
  const efile = (url: string, body: unknown, token = h.adminToken) =>
    h.json('POST', `${EFILE}/${url}`, { headers: { token }, body }) as unknown as Promise<Json>;
  const koo = async (url: string, token = h.adminToken) => {
    const res = await h.call('GET', `${KOO}/${url}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };
  const efileTask = async (id: string, token = h.adminToken) =>
    (await efile('task/list', { taskIds: [id] }, token)).data?.[0];

  before(async () => {
    h = await startHarness({ efile: { ratePerSecond: 1000, rateBurst: 1000 } });
    files = join(h.dataDir, 'files');
    await mkdir(join(files, 'src/tree/sub'), { recursive: true });
    await writeFile(join(files, 'src/a.txt'), 'hello efile');
    await writeFile(join(files, 'src/tree/one.bin'), Buffer.alloc(3000, 1));
    await writeFile(join(files, 'src/tree/sub/two.bin'), Buffer.alloc(5000, 2));
  });
  after(() => h.close());

  it('submits an async copy and lists it with every field of the seed, ending complete', async () => {
    const submitted = await efile('async-copy', [
      { sourcePath: '/local/src/tree', targetPath: '/local/efile-dst' },
    ]);
    assert.equal(submitted.code, '0');
    const created = submitted.data?.[0];
    assert.ok(created);
    assert.deepEqual(Object.keys(created).sort(), [...EFILE_FIELDS].sort());
    const id = created.taskId as string;
    const done = await waitFor(async () => {
      const t = await efileTask(id);
      return t?.status === 'complete' ? t : undefined;
    });
    assert.equal(done.operationType, 'copy');
    assert.equal(done.sourcePath, '/local/src/tree');
    assert.equal(done.targetPath, '/local/efile-dst');
    assert.equal(done.synchronousExecution, false);
    assert.equal(done.progress, '100%');
    assert.equal(done.totalSize, 8000);
    assert.equal(done.totalNum, 2);
    assert.equal(done.processedSize, 8000);
    assert.equal(done.processedNum, 2);
    assert.equal(done.errorCode, null);
    assert.equal(done.userName, 'admin');
    assert.equal(typeof done.userId, 'string');
    for (const key of ['submitTime', 'startTime', 'updateTime'])
      assert.match(String(done[key]), EFILE_TIME, key);
  });

  it('maps conflict policies: cover overwrites, both keeps both, none is 911021', async () => {
    assert.equal(
      (await efile('async-copy', [{ sourcePath: '/local/src/a.txt', targetPath: '/local/pol' }])).code,
      '0',
    );
    await waitFor(async () =>
      (
        await h.json<{ content: unknown[] }>('POST', '/api/fs/list', {
          token: h.adminToken,
          body: { path: '/local/pol' },
        })
      ).data?.content?.length
        ? true
        : undefined,
    );
    const again = await efile('async-copy', [{ sourcePath: '/local/src/a.txt', targetPath: '/local/pol' }]);
    assert.equal(again.code, '911021');
    assert.equal(again.data, null);
    const cover = await efile('async-copy', [
      { sourcePath: '/local/src/a.txt', targetPath: '/local/pol', duplicateHandleType: 'cover' },
    ]);
    assert.equal(cover.data?.[0]?.duplicateHandleType, 'cover');
    const both = await efile('async-copy', [
      { sourcePath: '/local/src/a.txt', targetPath: '/local/pol', duplicateHandleType: 'both' },
    ]);
    const bothId = both.data?.[0]?.taskId as string;
    await waitFor(async () => ((await efileTask(bothId))?.status === 'complete' ? true : undefined));
    const names = (
      await h.json<{ content: { name: string }[] }>('POST', '/api/fs/list', {
        token: h.adminToken,
        body: { path: '/local/pol' },
      })
    ).data.content.map((e) => e.name);
    assert.deepEqual(names.sort(), ['a (1).txt', 'a.txt']);
  });

  it('answers the seed codes for bad submissions and limits', async () => {
    assert.equal(
      (await efile('async-copy', [{ sourcePath: '/local/src/missing', targetPath: '/local/x' }])).code,
      '911020',
    );
    assert.equal(
      (await efile('async-copy', [{ sourcePath: '/local/src/a.txt', targetPath: '/local/src' }])).code,
      '911507',
    );
    assert.equal(
      (await efile('async-move', [{ sourcePath: '/local/src/tree', targetPath: '/local/src/tree/sub' }]))
        .code,
      '10004',
    );
    assert.equal((await efile('async-copy', [])).code, '10003');
    assert.equal((await efile('async-copy', [{ targetPath: '/local/x' }])).code, '10003');
    assert.equal(
      (await efile('async-copy', [{ sourcePath: { path: '/local/src/a.txt' }, targetPath: '/local/x' }]))
        .code,
      '10004',
    );
    assert.equal(
      (
        await efile('async-copy', [
          { sourcePath: '/local/src/a.txt', targetPath: '/local/x', duplicateHandleType: 'merge' },
        ])
      ).code,
      '10004',
    );
    assert.equal(
      (await efile('async-copy', [{ sourcePath: '/local/../etc/passwd', targetPath: '/local/x' }])).code,
      '911030',
    );
    assert.equal((await efile('task/list', { taskIds: [] })).code, '10003');
    assert.equal((await efile('task/list', {})).code, '10003');
    assert.equal(
      (await efile('task/cancel', { taskIds: Array.from({ length: 501 }, (_, i) => `id${i}`) })).code,
      '10004',
    );
    const malformed = await h.call('POST', `${EFILE}/task/list`, {
      headers: { token: h.adminToken, 'content-type': 'application/json' },
      body: '{"taskIds": [',
    });
    assert.equal(JSON.parse(malformed.body).code, '10004');
    assert.equal(malformed.statusCode, 200);
    const noBody = await h.call('POST', `${EFILE}/task/list`, { headers: { token: h.adminToken } });
    assert.equal(JSON.parse(noBody.body).code, '10003');
    assert.equal((await efile('task/list', { taskIds: ['x'] }, 'not-a-token')).code, '911406');
  });

  it('refuses a file larger than the free space at the destination with 911501', async () => {
    // A sparse file: its apparent size is far beyond any free space, its real size nothing.
    await writeFile(join(files, 'src/huge.img'), '');
    await truncate(join(files, 'src/huge.img'), 15 * 1024 ** 4);
    const res = await efile('async-copy', [
      { sourcePath: '/local/src/huge.img', targetPath: '/local/space' },
    ]);
    assert.equal(res.code, '911501');
  });

  it('refuses users without the permission with 911030', async () => {
    const token = await h.user('readonly', { permission: 0 });
    assert.equal(
      (await efile('async-copy', [{ sourcePath: '/local/src/a.txt', targetPath: '/local/ro' }], token)).code,
      '911030',
    );
    assert.equal((await efile('async-remove', [{ sourcePath: '/local/src/a.txt' }], token)).code, '911030');
  });

  it('cancels: result true for unfinished tasks, false with the final status for finished ones', async () => {
    await h.core.runner.stop();
    try {
      const res = await efile('async-copy', [
        { sourcePath: '/local/src/a.txt', targetPath: '/local/cancel-me' },
      ]);
      const id = res.data?.[0]?.taskId as string;
      const first = await efile('task/cancel', { taskIds: [id] });
      assert.deepEqual(first.data, [{ taskId: id, result: true, status: 'cancel' }]);
      assert.equal((await efileTask(id))?.status, 'cancel');
      const second = await efile('task/cancel', { taskIds: [id] });
      assert.deepEqual(second.data, [{ taskId: id, result: false, status: 'cancel' }]);
    } finally {
      h.core.runner.start();
    }
  });

  it('rate-limits each user with 911048', async () => {
    const limited = await startHarness({ efile: { ratePerSecond: 0.001, rateBurst: 3 } });
    try {
      const call = () =>
        limited.json<unknown>('POST', `${EFILE}/task/list`, {
          headers: { token: limited.adminToken },
          body: { taskIds: ['x'] },
        });
      const codes = [];
      for (let i = 0; i < 4; i++) codes.push(((await call()) as unknown as Json).code);
      assert.deepEqual(codes, ['0', '0', '0', '911048']);
    } finally {
      await limited.close();
    }
  });

  it("replays the seeds' own request examples verbatim", async () => {
    const list = await h.call('POST', `${EFILE}/task/list`, {
      headers: { token: h.adminToken, 'Content-Type': 'application/json' },
      body: '{\n    "taskIds": [\n        "10b10bf643814ebfb1fbf0d7e910e8d1"\n    ]\n}',
    });
    assert.deepEqual(JSON.parse(list.body), { code: '0', msg: 'success', data: [] });
    const cancel = await h.call('POST', `${EFILE}/task/cancel`, {
      headers: { token: h.adminToken, 'Content-Type': 'application/json' },
      body: '{\n    "taskIds": [\n        "254653d8816b4407ba27a9d004342c0e"\n    ]\n}',
    });
    assert.deepEqual(JSON.parse(cancel.body).data, [
      { taskId: '254653d8816b4407ba27a9d004342c0e', result: false, status: null },
    ]);
    // KooDrive's example: `pageCursor` present and empty, token as "Bearer+<token>".
    const koo = await h.call('GET', `${KOO}/list?taskType=0&status=2&pageSize=10&pageCursor`, {
      headers: { authorization: `Bearer+${h.adminToken}` },
    });
    const body = JSON.parse(koo.body);
    assert.equal(koo.statusCode, 200);
    assert.equal(body.code, '0');
    assert.ok(body.taskList.length > 0);
    assert.deepEqual(body.taskListDtos, body.taskList);
    for (const t of body.taskList) {
      assert.deepEqual(Object.keys(t).sort(), [...KOO_FIELDS].sort());
      assert.equal(t.status, 2);
      assert.equal(t.taskType, 0);
    }
  });

  it('KooDrive: filters by repeated status and by type, bounds pageSize, 404 for unknown ids', async () => {
    const all = (await koo('list')).body.taskList as { status: number; taskType: number }[];
    const some = (await koo('list?status=2&status=3')).body.taskList as { status: number }[];
    assert.ok(some.length > 0 && some.every((t) => t.status === 2 || t.status === 3));
    assert.equal(some.length, all.filter((t) => t.status === 2 || t.status === 3).length);
    assert.equal((await koo('list?taskType=3')).body.taskList.length, 0);
    assert.equal((await koo('list?pageSize=101')).status, 400);
    assert.equal((await koo('list?pageSize=0')).status, 400);
    const missing = await koo('no-such-task');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, '404');
  });

  it('KooDrive: paging with pageSize=7 while 1,000 tasks are added sees every task exactly once', async () => {
    await h.core.runner.stop();
    try {
      const principal = await h.core.auth.authenticate(await h.user('pager'));
      const token = await h.login('pager', 'pager-pw');
      const created: string[] = [];
      const seen: string[] = [];
      let cursor = '';
      let more = true;
      for (let round = 0; more || created.length < 1000; round++) {
        if (created.length < 1000) {
          const batch = await h.core.tasks.create(
            principal,
            Array.from({ length: 10 }, (_, i) => ({
              kind: 'copy' as const,
              name: `t${round}-${i}`,
              payload: {},
            })),
          );
          created.push(...batch.map((t) => t.id));
        }
        const page = (await koo(`list?pageSize=7${cursor ? `&pageCursor=${cursor}` : ''}`, token)).body;
        seen.push(...page.taskList.map((t: { taskId: string }) => t.taskId));
        more = page.nextCursor !== undefined;
        if (more) cursor = page.nextCursor;
        assert.ok(page.taskList.length <= 7);
      }
      assert.equal(new Set(seen).size, seen.length, 'no task seen twice');
      assert.deepEqual([...seen].sort(), [...created].sort());
      await h.core.tasks.clear(principal, 'copy', 'done');
      for (let i = 0; i < created.length; i += 500)
        await h.core.tasks.deleteSome(principal, created.slice(i, i + 500));
    } finally {
      h.core.runner.start();
    }
  });

  it('one task, three views: created in efile, canceled and retried through AList, and the other way round', async () => {
    await h.core.runner.stop();
    let id: string;
    try {
      id = (await efile('async-copy', [{ sourcePath: '/local/src/a.txt', targetPath: '/local/three' }]))
        .data?.[0]?.taskId as string;
      const undone = await h.json<{ id: string; state: string }[]>('GET', '/api/task/copy/undone', {
        token: h.adminToken,
      });
      assert.equal(undone.data.find((t) => t.id === id)?.state, 'pending');
      assert.equal((await koo(id)).body.status, 0);
      assert.equal(
        (await h.json('POST', `/api/task/copy/cancel?tid=${id}`, { token: h.adminToken })).code,
        200,
      );
      assert.equal((await efileTask(id))?.status, 'cancel');
      const kooCanceled = (await koo(id)).body;
      assert.equal(kooCanceled.status, 3);
      assert.equal(kooCanceled.resultCode, 'CANCELED');
      assert.equal(
        (await h.json('POST', `/api/task/copy/retry?tid=${id}`, { token: h.adminToken })).code,
        200,
      );
      assert.equal((await efileTask(id))?.status, 'waiting');
    } finally {
      h.core.runner.start();
    }
    await waitFor(async () => ((await efileTask(id))?.status === 'complete' ? true : undefined));
    assert.equal((await koo(id)).body.status, 2);

    // The other way: created through AList, canceled through efile.
    await h.core.runner.stop();
    try {
      const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token: h.adminToken,
        body: { src_dir: '/local/src', dst_dir: '/local/three-b', names: ['a.txt'] },
      });
      const alistId = res.data.tasks[0]?.id as string;
      assert.equal((await efileTask(alistId))?.status, 'waiting');
      assert.deepEqual((await efile('task/cancel', { taskIds: [alistId] })).data, [
        { taskId: alistId, result: true, status: 'cancel' },
      ]);
      const info = await h.json<{ state: string }[]>('POST', `/api/task/copy/info?tid=${alistId}`, {
        token: h.adminToken,
      });
      assert.equal(info.data[0]?.state, 'canceled');
      assert.equal((await koo(alistId)).body.resultCode, 'CANCELED');
    } finally {
      h.core.runner.start();
    }
  });

  it("never shows or touches another user's task through efile or KooDrive", async () => {
    const alice = await h.user('alice');
    const bob = await h.user('bob');
    await h.core.runner.stop();
    try {
      const id = (
        await efile('async-copy', [{ sourcePath: '/local/src/a.txt', targetPath: '/local/alice' }], alice)
      ).data?.[0]?.taskId as string;
      assert.deepEqual((await efile('task/list', { taskIds: [id] }, bob)).data, []);
      assert.deepEqual((await efile('task/cancel', { taskIds: [id] }, bob)).data, [
        { taskId: id, result: false, status: null },
      ]);
      assert.equal((await efileTask(id, alice))?.status, 'waiting');
      assert.equal((await koo(id, bob)).status, 404);
      const bobsList = (await koo('list', bob)).body.taskList as { taskId: string }[];
      assert.ok(!bobsList.some((t) => t.taskId === id));
      assert.equal((await koo(id, alice)).body.taskId, id);
      // The admin sees it everywhere.
      assert.equal((await efileTask(id))?.taskId, id);
    } finally {
      h.core.runner.start();
    }
  });

  it('serves an OpenAPI document built from the route schemas of all three dialects', async () => {
    const docs = await h.json<never>('GET', '/api/docs');
    const doc = docs as unknown as {
      openapi: string;
      paths: Record<string, Record<string, { responses?: Record<string, unknown> }>>;
    };
    assert.match(doc.openapi, /^3\./);
    for (const path of [
      `${EFILE}/task/list`,
      `${EFILE}/task/cancel`,
      `${EFILE}/async-copy`,
      `${KOO}/list`,
      `${KOO}/{taskId}`,
      '/api/task/{type}/{action}',
    ]) {
      assert.ok(doc.paths[path], path);
    }
    const listReply = JSON.stringify(doc.paths[`${EFILE}/task/list`]?.post?.responses);
    for (const field of EFILE_FIELDS) assert.ok(listReply.includes(`"${field}"`), field);
  });
});
