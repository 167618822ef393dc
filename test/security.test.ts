import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, isFinished, startHarness, waitFor } from './helpers/harness.ts';

/**
 * What a hostile or curious caller can do: one user reaching for another's tasks, guests and
 * anonymous callers, malformed and oversized input, and every way of spelling a path that leaves
 * the data directory — through `..`, encodings, absolute names and symlinks inside a storage.
 */

const TYPES = [
  'upload',
  'copy',
  'move',
  'delete',
  'offline_download',
  'offline_download_transfer',
  'decompress',
  'decompress_upload',
] as const;

const ACTIONS = {
  info: 'POST',
  done: 'GET',
  undone: 'GET',
  delete: 'POST',
  cancel: 'POST',
  clear_done: 'POST',
  clear_succeeded: 'POST',
  retry: 'POST',
  retry_failed: 'POST',
  delete_some: 'POST',
  cancel_some: 'POST',
  retry_some: 'POST',
} as const;
type Action = keyof typeof ACTIONS;

const PREFIXES = ['/api/task', '/api/admin/task'] as const;
const NOT_FOUND = { code: 404, message: 'task not found', data: null };
const GUEST = { code: 403, message: 'You are a guest', data: null };

interface TaskView {
  id: string;
  name: string;
  creator: string;
  creator_role: number;
  state: string;
  error: string;
  processed_files?: number;
  failures?: { path: string; error: string }[];
}

interface Envelope<T = unknown> {
  code: number;
  message: string;
  data: T;
}

function envelope<T = unknown>(res: { statusCode: number; body: string }, where: string): Envelope<T> {
  assert.ok(res.statusCode < 500, `${where}: HTTP ${res.statusCode}`);
  let env: Envelope<T>;
  try {
    env = JSON.parse(res.body) as Envelope<T>;
  } catch {
    assert.fail(`${where}: not JSON: ${res.body.slice(0, 200)}`);
  }
  assert.deepEqual(Object.keys(env).sort(), ['code', 'data', 'message'], `${where}: envelope`);
  assert.ok(env.code < 500, `${where}: code ${env.code} ${env.message}`);
  return env;
}

function tools(h: Harness) {
  const act = async <T = unknown>(
    token: string | null,
    type: string,
    action: Action,
    options: { tid?: string; body?: unknown; prefix?: string } = {},
  ): Promise<Envelope<T>> => {
    const url = `${options.prefix ?? '/api/task'}/${type}/${action}${options.tid ? `?tid=${encodeURIComponent(options.tid)}` : ''}`;
    const res = await h.call(ACTIONS[action], url, {
      token,
      ...(options.body !== undefined && { body: options.body }),
    });
    assert.equal(res.statusCode, 200, `${url}: HTTP ${res.statusCode}`);
    return envelope<T>(res, url);
  };
  const stateOf = async (type: string, id: string) => {
    const env = await act<TaskView[]>(h.adminToken, type, 'info', { tid: id });
    assert.equal(env.code, 200, `admin info ${id}: ${env.message}`);
    return env.data[0]!.state;
  };
  const settled = (type: string, id: string) =>
    waitFor(
      async () => {
        const env = await act<TaskView[]>(h.adminToken, type, 'info', { tid: id });
        const t = env.data?.[0];
        return t && isFinished(t.state) ? t : undefined;
      },
      20_000,
      `task ${id}`,
    );
  const post = <T = unknown>(token: string | null, url: string, body: unknown) =>
    h
      .call('POST', url, { token, body })
      .then((res) => envelope<T>(res, `POST ${url} ${JSON.stringify(body)}`));
  const copy = async (token: string, body: Record<string, unknown>, route = '/api/fs/copy') => {
    const env = await post<{ tasks: TaskView[] }>(token, route, body);
    assert.equal(env.code, 200, `${route}: ${env.message}`);
    return env.data.tasks;
  };
  return { act, stateOf, settled, post, copy };
}

describe('isolation between users', () => {
  let h: Harness;
  let t: ReturnType<typeof tools>;
  let a: string;
  let b: string;
  /** A's tasks: succeeded, failed, pending (copy workers are held at 0 while it waits). */
  const A = { succeeded: '', failed: '', pending: '', upload: '' };
  let bSucceeded = '';
  let bFailed = '';
  const aIds = () => [A.succeeded, A.failed, A.pending];

  before(async () => {
    h = await startHarness();
    t = tools(h);
    const files = join(h.dataDir, 'files');
    await mkdir(join(files, 'src'), { recursive: true });
    await writeFile(join(files, 'src', 'f.txt'), 'private');
    await mkdir(join(files, 'a-failed'), { recursive: true });
    await writeFile(join(files, 'a-failed', 'f.txt'), 'in the way');
    await mkdir(join(files, 'b-failed'), { recursive: true });
    await writeFile(join(files, 'b-failed', 'f.txt'), 'in the way');
    a = await h.user('a');
    b = await h.user('b');

    A.succeeded = (
      await t.copy(a, { src_dir: '/local/src', dst_dir: '/local/a-ok', names: ['f.txt'] })
    )[0]!.id;
    A.failed = (
      await t.copy(a, { src_dir: '/local/src', dst_dir: '/local/a-failed', names: ['f.txt'] })
    )[0]!.id;
    bSucceeded = (await t.copy(b, { src_dir: '/local/src', dst_dir: '/local/b-ok', names: ['f.txt'] }))[0]!
      .id;
    bFailed = (await t.copy(b, { src_dir: '/local/src', dst_dir: '/local/b-failed', names: ['f.txt'] }))[0]!
      .id;
    const up = await h.call('PUT', '/api/fs/put', {
      token: a,
      body: Buffer.from('a upload'),
      headers: { 'file-path': '/local/a-upload.txt', 'as-task': 'true' },
    });
    A.upload = (JSON.parse(up.body) as Envelope<{ task: TaskView }>).data.task.id;
    assert.equal((await t.settled('copy', A.succeeded)).state, 'succeeded');
    assert.equal((await t.settled('copy', A.failed)).state, 'failed');
    assert.equal((await t.settled('copy', bSucceeded)).state, 'succeeded');
    assert.equal((await t.settled('copy', bFailed)).state, 'failed');
    assert.equal((await t.settled('upload', A.upload)).state, 'succeeded');
    h.core.runner.setLimit('copy', 0);
    A.pending = (
      await t.copy(a, { src_dir: '/local/src', dst_dir: '/local/a-wait', names: ['f.txt'] })
    )[0]!.id;
  });
  after(() => h.close());

  const assertATasksUntouched = async () => {
    assert.equal(await t.stateOf('copy', A.succeeded), 'succeeded');
    assert.equal(await t.stateOf('copy', A.failed), 'failed');
    assert.equal(await t.stateOf('copy', A.pending), 'pending');
    assert.equal(await t.stateOf('upload', A.upload), 'succeeded');
  };

  it('answers B’s info/cancel/delete/retry on A’s tasks exactly as for a task that does not exist', async () => {
    for (const prefix of PREFIXES) {
      for (const action of ['info', 'cancel', 'delete', 'retry'] as const) {
        for (const id of aIds()) {
          assert.deepEqual(
            await t.act(b, 'copy', action, { tid: id, prefix }),
            NOT_FOUND,
            `${prefix} ${action}`,
          );
        }
        assert.deepEqual(await t.act(b, 'upload', action, { tid: A.upload, prefix }), NOT_FOUND);
      }
    }
    await assertATasksUntouched();
  });

  it('leaves A’s tasks out of B’s done/undone lists, whatever the filters', async () => {
    for (const prefix of PREFIXES) {
      for (const query of [
        '',
        '?per_page=100&page=1',
        '?limit=100',
        '?creator=a',
        '?state=failed,succeeded,pending',
      ]) {
        for (const which of ['done', 'undone']) {
          for (const type of ['copy', 'upload']) {
            const url = `${prefix}/${type}/${which}${query}`;
            const res = await h.call('GET', url, { token: b });
            const env = envelope<TaskView[]>(res, url);
            assert.equal(env.code, 200, url);
            assert.ok(!res.body.includes('"creator":"a"'), `${url} shows none of A’s`);
            for (const id of [...aIds(), A.upload]) assert.ok(!res.body.includes(id), `${url}: ${id}`);
          }
        }
      }
    }
    // Asking for A's tasks by name gives an empty list, not B's own.
    const byName = await h.call('GET', '/api/task/copy/done?creator=a', { token: b });
    assert.deepEqual(envelope<TaskView[]>(byName, 'creator=a').data, []);
    // B still sees its own.
    const own = await t.act<TaskView[]>(b, 'copy', 'done');
    assert.deepEqual(own.data.map((x) => x.id).sort(), [bSucceeded, bFailed].sort());
    assert.ok(own.data.every((x) => x.creator === 'b' && x.creator_role === 0));
  });

  it('reports A’s ids "task not found" to B’s *_some and does not act on them', async () => {
    for (const prefix of PREFIXES) {
      for (const action of ['cancel_some', 'retry_some', 'delete_some'] as const) {
        const res = await t.act(b, 'copy', action, { body: aIds(), prefix });
        assert.equal(res.code, 200);
        assert.deepEqual(
          res.data,
          Object.fromEntries(aIds().map((id) => [id, 'task not found'])),
          `${prefix} ${action}`,
        );
      }
    }
    await assertATasksUntouched();
  });

  it('lets B’s clear_done, clear_succeeded and retry_failed act on B’s tasks only', async () => {
    assert.deepEqual(await t.act(b, 'copy', 'retry_failed'), { code: 200, message: 'success', data: null });
    assert.equal(await t.stateOf('copy', bFailed), 'before_retry', 'B’s own failed task was requeued');
    assert.deepEqual(await t.act(b, 'copy', 'cancel', { tid: bFailed }), {
      code: 200,
      message: 'success',
      data: null,
    });
    await assertATasksUntouched();

    assert.deepEqual(await t.act(b, 'copy', 'clear_succeeded'), {
      code: 200,
      message: 'success',
      data: null,
    });
    assert.deepEqual(
      await t.act(b, 'copy', 'info', { tid: bSucceeded }),
      NOT_FOUND,
      'B’s own succeeded cleared',
    );
    await assertATasksUntouched();

    assert.deepEqual(await t.act(b, 'copy', 'clear_done', { prefix: '/api/admin/task' }), {
      code: 200,
      message: 'success',
      data: null,
    });
    assert.deepEqual(await t.act(b, 'copy', 'info', { tid: bFailed }), NOT_FOUND, 'B’s own finished cleared');
    assert.deepEqual(await t.act(b, 'upload', 'clear_done'), { code: 200, message: 'success', data: null });
    await assertATasksUntouched();
    // And A still sees them all.
    const aDone = await t.act<TaskView[]>(a, 'copy', 'done');
    assert.deepEqual(aDone.data.map((x) => x.id).sort(), [A.succeeded, A.failed].sort());
  });

  it('keeps A’s tasks from B in the other dialects too (efile, KooDrive)', async () => {
    const ids = aIds();
    const efile = (url: string, body: unknown) =>
      h.call('POST', `/efile/openapi/v2/file${url}`, { headers: { token: b }, body }).then((r) => {
        assert.equal(r.statusCode, 200, url);
        return JSON.parse(r.body) as { code: string; data: unknown };
      });
    const listed = await efile('/task/list', { taskIds: ids });
    assert.deepEqual(listed.data, [], 'efile task/list shows none of A’s');
    const canceled = await efile('/task/cancel', { taskIds: [A.pending] });
    assert.deepEqual(canceled.data, [{ taskId: A.pending, result: false, status: null }]);
    const kList = await h.call('GET', '/koodrive/ose/v1/task/list', {
      headers: { authorization: `Bearer ${b}` },
    });
    assert.equal(kList.statusCode, 200);
    for (const id of [...ids, A.upload])
      assert.ok(!kList.body.includes(id), 'KooDrive list shows none of A’s');
    const kOne = await h.call('GET', `/koodrive/ose/v1/task/${A.pending}`, {
      headers: { authorization: `Bearer ${b}` },
    });
    assert.notEqual(kOne.statusCode, 200);
    assert.ok(!kOne.body.includes('"a"') && !kOne.body.includes('a-wait'), 'nothing about A’s task');
    await assertATasksUntouched();
  });

  it('ends a session when its user is disabled, deleted or changes password', async () => {
    const users = async () => {
      const res = await h.json<{ content: { id: number; username: string }[] }>(
        'GET',
        '/api/admin/user/list',
        {
          token: h.adminToken,
        },
      );
      return res.data.content;
    };
    const d = await h.user('d');
    const e = await h.user('e');
    const f = await h.user('f');
    assert.equal((await t.act(d, 'copy', 'done')).code, 200);
    const id = (name: string) => users().then((list) => list.find((u) => u.username === name)!.id);
    const upd = (name: string, body: Record<string, unknown>) =>
      id(name).then((userId) => t.post(h.adminToken, '/api/admin/user/update', { id: userId, ...body }));
    assert.equal((await upd('d', { disabled: true })).code, 200);
    assert.equal((await t.act(d, 'copy', 'done')).code, 401, 'disabled');
    assert.equal((await upd('e', { password: 'a-new-password' })).code, 200);
    assert.equal((await t.act(e, 'copy', 'done')).code, 401, 'password changed');
    const fId = await id('f');
    assert.equal((await t.post(h.adminToken, `/api/admin/user/delete?id=${fId}`, {})).code, 200);
    assert.equal((await t.act(f, 'copy', 'done')).code, 401, 'deleted');
  });

  it('holds a user without file permissions to reading: no task is created', async () => {
    const reader = await h.user('reader', { permission: 0 });
    const before = (await t.act<TaskView[]>(h.adminToken, 'copy', 'undone')).data.length;
    for (const route of ['/api/fs/copy', '/api/fs/move']) {
      const env = await t.post(reader, route, {
        src_dir: '/local/src',
        dst_dir: '/local/r',
        names: ['f.txt'],
      });
      assert.equal(env.code, 403, `${route}: ${env.message}`);
      assert.match(env.message, /permission/);
    }
    const rm = await t.post(reader, '/api/fs/remove', { dir: '/local/src', names: ['f.txt'] });
    assert.equal(rm.code, 403);
    const put = await h.call('PUT', '/api/fs/put', {
      token: reader,
      body: Buffer.from('no'),
      headers: { 'file-path': '/local/reader.txt', 'as-task': 'true' },
    });
    assert.equal(envelope(put, 'reader put').code, 403);
    assert.equal((await t.act<TaskView[]>(h.adminToken, 'copy', 'undone')).data.length, before);
    assert.equal(await readFile(join(h.dataDir, 'files', 'src', 'f.txt'), 'utf8'), 'private');
    assert.equal(await readFile(join(h.dataDir, 'files', 'reader.txt')).catch(() => null), null);
  });

  it('confines a user to its base path', async () => {
    const files = join(h.dataDir, 'files');
    await mkdir(join(files, 'homes', 'c'), { recursive: true });
    await writeFile(join(files, 'homes', 'c', 'mine.txt'), 'mine');
    const c = await h.user('c', { base_path: '/local/homes/c' });
    const list = await t.post<{ content: { name: string }[] }>(c, '/api/fs/list', { path: '/' });
    assert.equal(list.code, 200);
    assert.deepEqual(
      list.data.content.map((e) => e.name),
      ['mine.txt'],
    );
    for (const path of ['/..', '/../..', '/../../src', '/../../src/f.txt']) {
      const env = await t.post(c, '/api/fs/list', { path });
      assert.ok([400, 403].includes(env.code), `list ${path} → ${env.code}`);
    }
    const read = await h.call('GET', '/d/..%2f..%2fsrc%2ff.txt', { token: c });
    assert.ok(read.statusCode >= 400 && read.statusCode < 500 && !read.body.includes('private'));
    const out = await t.post(c, '/api/fs/copy', { src_dir: '/../../src', dst_dir: '/', names: ['f.txt'] });
    assert.ok([400, 403].includes(out.code), `copy out → ${out.code}`);
    const up = await h.call('PUT', '/api/fs/put', {
      token: c,
      body: Buffer.from('x'),
      headers: { 'file-path': encodeURIComponent('/../../src/f.txt'), 'as-task': 'true' },
    });
    assert.ok([400, 403].includes(envelope(up, 'put out').code));
    assert.equal(await readFile(join(files, 'src', 'f.txt'), 'utf8'), 'private', 'untouched');
    // Inside its home it works, and the task names the real storage path.
    const [copy] = await t.copy(c, { src_dir: '/', dst_dir: '/sub', names: ['mine.txt'] });
    assert.equal(copy!.name, 'copy [/local](/homes/c/mine.txt) to [/local](/homes/c/sub)');
    assert.deepEqual(await t.act(c, 'copy', 'delete', { tid: copy!.id }), {
      code: 200,
      message: 'success',
      data: null,
    });
  });

  it('lets the admin see and act on everyone’s tasks', async () => {
    const done = await t.act<TaskView[]>(h.adminToken, 'copy', 'done');
    assert.ok(done.data.some((x) => x.id === A.succeeded && x.creator === 'a' && x.creator_role === 0));
    const onlyA = await h.call('GET', '/api/task/copy/done?creator=a', { token: h.adminToken });
    const onlyAEnv = envelope<TaskView[]>(onlyA, 'creator=a');
    assert.ok(onlyAEnv.data.length > 0 && onlyAEnv.data.every((x) => x.creator === 'a'));
    for (const prefix of PREFIXES) {
      const info = await t.act<TaskView[]>(h.adminToken, 'copy', 'info', { tid: A.pending, prefix });
      assert.equal(info.data[0]?.creator, 'a');
    }
    const undone = await t.act<TaskView[]>(h.adminToken, 'copy', 'undone');
    assert.ok(undone.data.some((x) => x.id === A.pending));
    const ok = { code: 200, message: 'success', data: null };
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'cancel', { tid: A.pending }), ok);
    assert.equal(await t.stateOf('copy', A.pending), 'canceled');
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'retry', { tid: A.pending }), ok);
    assert.equal(await t.stateOf('copy', A.pending), 'before_retry');
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'cancel_some', { body: [A.pending, 'x'] }), {
      code: 200,
      message: 'success',
      data: { x: 'task not found' },
    });
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'delete', { tid: A.succeeded }), ok);
    assert.deepEqual(await t.act(a, 'copy', 'info', { tid: A.succeeded }), NOT_FOUND, 'gone for A too');
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'delete_some', { body: [A.pending, A.failed] }), {
      code: 200,
      message: 'success',
      data: {},
    });
    assert.deepEqual((await t.act(a, 'copy', 'done')).data, []);
  });

  it('answers a guest-role user {"code":403,"message":"You are a guest"} on every task action', async () => {
    const guest = await h.user('visitor', { role: 1 });
    for (const prefix of PREFIXES) {
      for (const type of TYPES) {
        for (const action of Object.keys(ACTIONS) as Action[]) {
          const res = await t.act(guest, type, action, {
            prefix,
            ...(action.endsWith('_some') ? { body: [A.upload] } : { tid: A.upload }),
          });
          assert.deepEqual(res, GUEST, `${prefix}/${type}/${action}`);
        }
      }
    }
    assert.equal(await t.stateOf('upload', A.upload), 'succeeded', 'the guest changed nothing');
    // Nor can a guest create tasks.
    const copy = await t.post(guest, '/api/fs/copy', {
      src_dir: '/local/src',
      dst_dir: '/local/g',
      names: ['f.txt'],
    });
    assert.equal(copy.code, 403);
    const put = await h.call('PUT', '/api/fs/put', {
      token: guest,
      body: Buffer.from('guest'),
      headers: { 'file-path': '/local/guest.txt', 'as-task': 'true' },
    });
    assert.deepEqual(envelope(put, 'guest put'), GUEST);
  });

  it('answers code 401 without a token (the built-in guest is off) and with a bad token', async () => {
    for (const token of [null, 'not-a-token', `${h.adminToken}x`, 'Bearer ']) {
      for (const prefix of PREFIXES) {
        for (const type of TYPES) {
          for (const action of Object.keys(ACTIONS) as Action[]) {
            const res = await t.act(token, type, action, {
              prefix,
              ...(action.endsWith('_some') ? { body: [A.upload] } : { tid: A.upload }),
            });
            assert.equal(res.code, 401, `${String(token)} ${prefix}/${type}/${action}: ${res.message}`);
            assert.equal(res.data, null);
          }
        }
      }
    }
    assert.equal(await t.stateOf('upload', A.upload), 'succeeded');
  });
});

describe('token lifetime', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ tokenExpiresHours: 2 / 3600 });
  });
  after(() => h.close());

  it('refuses a token once it has expired, even one that was accepted a moment before', async () => {
    const me = async () => (await h.call('GET', '/api/me', { token: h.adminToken })).json();
    assert.equal((await me()).code, 200);
    assert.equal((await me()).code, 200);
    await new Promise((resolve) => setTimeout(resolve, 3100));
    assert.deepEqual(await me(), { code: 401, message: 'token is expired', data: null });
  });
});

describe('worker limits', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  it('lets only admins read and change worker limits, and refuses bad limits', async () => {
    const bob = await h.user('bob');
    assert.equal((await h.json('GET', '/api/admin/task/workers', { token: bob })).code, 403);
    assert.equal(
      (await h.json('POST', '/api/admin/task/workers', { token: bob, body: { copy: 1 } })).code,
      403,
    );
    const set = await h.json<Record<string, number>>('POST', '/api/admin/task/workers', {
      token: h.adminToken,
      body: { copy: 3 },
    });
    assert.equal(set.data.copy, 3);
    const read = await h.json<Record<string, number>>('GET', '/api/admin/task/workers', {
      token: h.adminToken,
    });
    assert.equal(read.data.copy, 3);
    for (const body of [{ copy: -1 }, { nope: 1 }]) {
      const res = await h.json('POST', '/api/admin/task/workers', { token: h.adminToken, body });
      assert.equal(res.code, 400, JSON.stringify(body));
    }
  });
});

describe('bad input', () => {
  let h: Harness;
  let t: ReturnType<typeof tools>;
  let files: string;
  let outside: string;
  /** A name no legitimate file has: any file carrying it outside `files/` is an escape. */
  const marker = `ferry-pwned-${randomUUID()}`;

  /** Every path below `dir` (not following links), relative to it. */
  async function walk(dir: string): Promise<string[]> {
    const out: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const p = join(dir, name);
      out.push(p);
      const info = await lstat(p).catch(() => null);
      if (info?.isDirectory()) out.push(...(await walk(p)));
    }
    return out;
  }

  /** Nothing named with the marker anywhere but below the storage root; the outside folder intact. */
  async function assertNothingEscaped(): Promise<void> {
    const parent = dirname(h.dataDir);
    for (const name of await readdir(parent)) assert.ok(!name.includes(marker), `${name} in ${parent}`);
    for (const name of await readdir(tmpdir())) assert.ok(!name.includes(marker), `${name} in tmpdir`);
    for (const p of await walk(h.dataDir)) {
      if (p.includes(marker)) assert.ok(p.startsWith(files + '/'), `escaped: ${relative(h.dataDir, p)}`);
    }
    assert.deepEqual((await walk(outside)).map((p) => relative(outside, p)).sort(), [
      'inner',
      'inner/deep.txt',
      'secret.txt',
    ]);
    assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'TOP-SECRET');
    assert.equal(await readFile(join(outside, 'inner', 'deep.txt'), 'utf8'), 'DEEP-SECRET');
    assert.equal(await readlink(join(files, 'escape')), outside, 'the link itself is still there');
  }

  /** No file below the storage root holds the outside folder's secrets. */
  async function assertNoSecretInside(): Promise<void> {
    for (const p of await walk(files)) {
      const info = await lstat(p);
      if (!info.isFile()) continue;
      const text = await readFile(p, 'utf8');
      assert.ok(!text.includes('SECRET'), `secret copied into ${relative(files, p)}`);
    }
  }

  before(async () => {
    h = await startHarness();
    t = tools(h);
    files = join(h.dataDir, 'files');
    outside = await mkdtemp(join(tmpdir(), 'ferry-outside-'));
    await writeFile(join(outside, 'secret.txt'), 'TOP-SECRET');
    await mkdir(join(outside, 'inner'));
    await writeFile(join(outside, 'inner', 'deep.txt'), 'DEEP-SECRET');
    await mkdir(join(files, 'src'), { recursive: true });
    await writeFile(join(files, 'src', 'f.txt'), 'plain');
    await symlink(outside, join(files, 'escape'));
    await symlink(join(outside, 'secret.txt'), join(files, 'secret-link.txt'));
    const other = await h.json('POST', '/api/admin/storage/create', {
      token: h.adminToken,
      body: {
        mount_path: '/other',
        driver: 'Local',
        addition: JSON.stringify({ root_folder_path: join(h.dataDir, 'other') }),
      },
    });
    assert.equal(other.code, 200, other.message);
  });
  after(async () => {
    await h.close();
    await rm(outside, { recursive: true, force: true });
  });

  it('answers a malformed JSON body with a code 400 envelope, never a 500', async () => {
    for (const url of [
      '/api/fs/copy',
      '/api/fs/move',
      '/api/fs/remove',
      '/api/fs/list',
      '/api/fs/get',
      '/api/fs/mkdir',
      '/api/fs/rename',
      '/api/task/copy/cancel_some',
      '/api/task/copy/delete_some',
      '/api/task/upload/retry_some',
      '/api/admin/task/copy/cancel_some',
      '/api/auth/login',
      '/api/admin/user/create',
      '/api/admin/storage/create',
    ]) {
      for (const body of ['{"src_dir": ', '[1,2', '{bad json}', '\u0000', 'nul', '{"a":1}}']) {
        const res = await h.call('POST', url, {
          token: h.adminToken,
          body,
          headers: { 'content-type': 'application/json' },
        });
        const env = envelope(res, `${url} ${JSON.stringify(body)}`);
        assert.equal(env.code, 400, `${url} ${JSON.stringify(body)}: ${env.code} ${env.message}`);
        assert.ok(env.message.length > 0);
        assert.equal(env.data, null);
      }
    }
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });

  it('answers wrong types with code 400 and a clear message', async () => {
    const bad = async (url: string, body: unknown, pattern: RegExp) => {
      const env = await t.post(h.adminToken, url, body);
      assert.equal(env.code, 400, `${url} ${JSON.stringify(body)}: ${env.code} ${env.message}`);
      assert.match(env.message, pattern, `${url} ${JSON.stringify(body)}`);
    };
    const copy = { src_dir: '/local/src', dst_dir: '/local/x' };
    await bad('/api/fs/copy', { ...copy, names: 'f.txt' }, /names/);
    await bad('/api/fs/copy', { ...copy, names: { 0: 'f.txt' } }, /names/);
    await bad('/api/fs/copy', { ...copy, names: null }, /names/);
    await bad('/api/fs/copy', { ...copy }, /names/);
    await bad('/api/fs/copy', { ...copy, names: [] }, /names/);
    await bad('/api/fs/copy', { ...copy, names: [42] }, /name/);
    await bad('/api/fs/copy', { ...copy, names: [''] }, /name/);
    await bad('/api/fs/copy', { ...copy, names: [null] }, /name/);
    await bad('/api/fs/copy', { ...copy, src_dir: 42, names: ['f.txt'] }, /path/);
    await bad('/api/fs/copy', { ...copy, dst_dir: ['/local/x'], names: ['f.txt'] }, /path/);
    await bad('/api/fs/copy', { dst_dir: '/local/x', names: ['f.txt'] }, /path/);
    await bad('/api/fs/move', { ...copy, names: 7 }, /names/);
    await bad('/api/fs/remove', { dir: '/local/src', names: 'f.txt' }, /names/);
    await bad('/api/fs/remove', { dir: 5, names: ['f.txt'] }, /path/);
    await bad('/api/fs/list', { path: 42 }, /path/);
    await bad('/api/fs/list', { path: { a: 1 } }, /path/);
    await bad('/api/fs/get', { path: ['/local'] }, /path/);
    await bad('/api/fs/mkdir', { path: 1 }, /path/);
    await bad('/api/fs/mkdir', {}, /path/);
    // Valid JSON that is not an object.
    for (const json of ['["f.txt"]', '"just a string"', '12', 'null', 'true']) {
      const res = await h.call('POST', '/api/fs/copy', {
        token: h.adminToken,
        body: json,
        headers: { 'content-type': 'application/json' },
      });
      const env = envelope(res, `copy ${json}`);
      assert.equal(env.code, 400, `copy ${json}: ${env.code} ${env.message}`);
      assert.match(env.message, /body/, json);
    }
    assert.equal(await readdir(join(files, 'x')).catch(() => null), null, 'nothing was copied');

    // tid missing, or not a single string.
    for (const action of ['cancel', 'delete', 'retry'] as const) {
      const env = await t.act(h.adminToken, 'copy', action);
      assert.equal(env.code, 400, `${action} without tid`);
      assert.match(env.message, /tid/);
      const twice = envelope(
        await h.call('POST', `/api/task/copy/${action}?tid=a&tid=b`, { token: h.adminToken }),
        `${action} tid twice`,
      );
      assert.notEqual(twice.code, 200, `${action} with two tids`);
    }
    const infoNoTid = await t.act(h.adminToken, 'copy', 'info');
    assert.notEqual(infoNoTid.code, 200);
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'info', { tid: 'x'.repeat(5000) }), NOT_FOUND);
    assert.deepEqual(await t.act(h.adminToken, 'copy', 'info', { tid: '../../etc/passwd' }), NOT_FOUND);

    // *_some bodies that are not arrays of ids.
    for (const json of ['{"ids":["a"]}', '"a-string"', '5', 'true', 'null', '{}']) {
      for (const action of ['cancel_some', 'delete_some', 'retry_some'] as const) {
        const res = await h.call('POST', `/api/task/copy/${action}`, {
          token: h.adminToken,
          body: json,
          headers: { 'content-type': 'application/json' },
        });
        const env = envelope(res, `${action} ${json}`);
        assert.equal(env.code, 400, `${action} ${json}: ${env.code} ${env.message}`);
        assert.match(env.message, /array/);
      }
    }
    const noBody = envelope(
      await h.call('POST', '/api/task/copy/cancel_some', { token: h.adminToken }),
      'cancel_some without body',
    );
    assert.equal(noBody.code, 400);
    const oddIds = await t.act<Record<string, string>>(h.adminToken, 'copy', 'cancel_some', {
      body: [1, null, { a: 1 }],
    });
    assert.equal(oddIds.code, 200);
    assert.ok(Object.values(oddIds.data).every((m) => m === 'task not found'));
    assert.equal(Object.keys(oddIds.data).length, 3);
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });

  it('refuses 10,000 ids in a *_some call as a whole, with a clear 400, acting on none', async () => {
    h.core.runner.setLimit('copy', 0);
    try {
      const [pending] = await t.copy(h.adminToken, {
        src_dir: '/local/src',
        dst_dir: '/local/bulk',
        names: ['f.txt'],
      });
      const ids = [pending!.id, ...Array.from({ length: 9_999 }, (_, i) => `id-${i}`)];
      for (const action of ['cancel_some', 'delete_some', 'retry_some'] as const) {
        for (const prefix of PREFIXES) {
          const env = await t.act(h.adminToken, 'copy', action, { body: ids, prefix });
          assert.equal(env.code, 400, `${action}: ${env.message}`);
          assert.match(env.message, /at most \d+/);
          assert.equal(env.data, null);
        }
      }
      assert.equal(await t.stateOf('copy', pending!.id), 'pending', 'the real id was not acted on');
      // A body over the size limit is refused too, not a crash.
      const huge = JSON.stringify(Array.from({ length: 400_000 }, (_, i) => `task-id-${i}`));
      const res = await h.call('POST', '/api/task/copy/cancel_some', {
        token: h.adminToken,
        body: huge,
        headers: { 'content-type': 'application/json' },
      });
      const env = envelope(res, 'huge body');
      assert.ok(env.code === 400 || env.code === 413, `${env.code} ${env.message}`);
      await t.act(h.adminToken, 'copy', 'delete', { tid: pending!.id });
    } finally {
      h.core.runner.setLimit('copy', 8);
    }
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });

  it('refuses `..` and encoded traversal in File-Path and writes nothing outside the storage', async () => {
    const put = (filePath: string, asTask = true) =>
      h.call('PUT', '/api/fs/put', {
        token: h.adminToken,
        body: Buffer.from(`payload ${marker}`),
        headers: {
          'file-path': filePath,
          'content-type': 'application/octet-stream',
          ...(asTask && { 'as-task': 'true' }),
        },
      });
    const refused = [
      `/local/../../${marker}-1.txt`,
      encodeURIComponent(`/local/../../${marker}-2.txt`),
      `/local/%2e%2e%2f%2e%2e%2f${marker}-3.txt`,
      `/local/%2E%2E/%2E%2E/${marker}-4.txt`,
      `/local/src/../../../${marker}-5.txt`,
      `/../${marker}-6.txt`,
      `..%2f..%2f..%2f${marker}-7.txt`,
      `/local/./../${marker}-8.txt`,
      `/local/..`,
      `%2Flocal%2F..%2F..%2F${marker}-9.txt`,
    ];
    for (const path of refused) {
      for (const asTask of [true, false]) {
        const env = envelope(await put(path, asTask), `PUT ${path}`);
        assert.ok([400, 403].includes(env.code), `${path} → ${env.code} ${env.message}`);
        assert.match(env.message, /\.\.|outside|path|name a file/i, `${path}: clear message`);
      }
    }
    for (const path of [`/local/x%00${marker}.txt`, '/local/%E0%A4%A', '']) {
      const env = envelope(await put(path), `PUT ${JSON.stringify(path)}`);
      assert.equal(env.code, 400, `${JSON.stringify(path)} → ${env.code} ${env.message}`);
    }
    // Spellings that only look like traversal are ordinary names: if accepted, they land inside.
    for (const path of [`/local/%252e%252e%252f${marker}-a.txt`, `/local/..%5c..%5c${marker}-b.txt`]) {
      const env = envelope<{ task?: { id: string } }>(await put(path), `PUT ${path}`);
      if (env.code === 200 && env.data.task) await t.settled('upload', env.data.task.id);
    }
    // Refused uploads leave no spooled bytes behind.
    await waitFor(
      async () => ((await readdir(join(h.dataDir, 'spool'))).length === 0 ? true : undefined),
      5000,
      'an empty spool',
    );
    await assertNothingEscaped();
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });

  it('refuses absolute names and `..` in names[], src_dir and dst_dir; nothing leaves or is lost', async () => {
    const before = (await t.act<TaskView[]>(h.adminToken, 'copy', 'done')).data.length;
    for (const route of ['/api/fs/copy', '/api/fs/move']) {
      for (const names of [
        ['/etc/passwd'],
        ['..'],
        ['.'],
        ['../..'],
        [`../../${marker}`],
        [`a/../../${marker}`],
        ['f.txt', '/etc/passwd'],
        ['f.txt\u0000'],
      ]) {
        const env = await t.post(h.adminToken, route, { src_dir: '/local/src', dst_dir: '/local/x', names });
        assert.ok([400, 403].includes(env.code), `${route} ${JSON.stringify(names)} → ${env.code}`);
        assert.match(env.message, /name|\.\.|path|outside/i);
      }
      for (const [src, dst] of [
        ['/local/../..', '/local/x'],
        ['/local/src', '/local/../..'],
        ['/local/src', `/local/../../${marker}`],
        ['/local/src/../../..', '/local/x'],
        ['/../../etc', '/local/x'],
        ['/local/src', `/local/x/../../../${marker}`],
      ]) {
        const env = await t.post(h.adminToken, route, { src_dir: src, dst_dir: dst, names: ['f.txt'] });
        assert.ok([400, 403].includes(env.code), `${route} ${src} → ${dst}: ${env.code} ${env.message}`);
        assert.match(env.message, /\.\./);
      }
    }
    for (const names of [['/etc/passwd'], ['..'], ['.'], [`../${marker}`]]) {
      const env = await t.post(h.adminToken, '/api/fs/remove', { dir: '/local/src', names });
      assert.ok([400, 403].includes(env.code), `remove ${JSON.stringify(names)} → ${env.code}`);
    }
    for (const dir of ['/local/..', '/local/src/../..', '/..']) {
      const env = await t.post(h.adminToken, '/api/fs/remove', { dir, names: ['f.txt'] });
      assert.ok([400, 403].includes(env.code), `remove in ${dir} → ${env.code}`);
    }
    // The storage root itself cannot be removed, copied or moved through the mount's parent.
    for (const route of ['/api/fs/remove', '/api/fs/copy', '/api/fs/move']) {
      const env = await t.post(h.adminToken, route, {
        dir: '/',
        src_dir: '/',
        dst_dir: '/local/x',
        names: ['local'],
      });
      assert.ok([400, 403].includes(env.code), `${route} of /local → ${env.code} ${env.message}`);
    }
    for (const [url, body] of [
      ['/api/fs/list', { path: '/local/..' }],
      ['/api/fs/list', { path: '/local/../../' }],
      ['/api/fs/get', { path: '/local/../../etc/passwd' }],
      ['/api/fs/mkdir', { path: `/local/../../${marker}` }],
      ['/api/fs/rename', { path: '/local/src/f.txt', name: `../../${marker}` }],
      ['/api/fs/rename', { path: '/local/src/f.txt', name: '/etc/x' }],
    ] as const) {
      const env = await t.post(h.adminToken, url, body);
      assert.ok([400, 403].includes(env.code), `${url} ${JSON.stringify(body)} → ${env.code}`);
    }
    for (const url of [
      '/d/local/%2e%2e/%2e%2e/etc/passwd',
      '/d/local/..%2f..%2fetc%2fpasswd',
      '/d/..%2f..%2fetc/passwd',
    ]) {
      const res = await h.call('GET', url, { token: h.adminToken });
      // inject resolves `%2e%2e` before sending, so the first URL arrives as /etc/passwd: a page
      // of the web UI (its index.html), not a file.
      const uiPage = res.statusCode === 200 && String(res.headers['content-type']).startsWith('text/html');
      assert.ok(uiPage || (res.statusCode >= 400 && res.statusCode < 500), `${url} → ${res.statusCode}`);
      assert.ok(!res.body.includes('root:'), `${url} leaks /etc/passwd`);
    }
    assert.equal(
      (await t.act<TaskView[]>(h.adminToken, 'copy', 'done')).data.length,
      before,
      'no task created',
    );
    assert.equal(await readFile(join(files, 'src', 'f.txt'), 'utf8'), 'plain', 'the source is intact');
    assert.ok(!(await readdir(join(files, 'x')).catch(() => [] as string[])).includes('passwd'));
    await assertNothingEscaped();
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });

  it('does not follow a symlink out of the storage: list, get, download', async () => {
    for (const path of ['/local/escape', '/local/escape/inner', '/local/escape/']) {
      const res = await h.call('POST', '/api/fs/list', { token: h.adminToken, body: { path } });
      const env = envelope(res, `list ${path}`);
      assert.ok([403, 404].includes(env.code), `list ${path} → ${env.code}`);
      assert.ok(
        !res.body.includes('secret.txt') && !res.body.includes('deep.txt'),
        `list ${path} leaks names`,
      );
    }
    // The storage root itself still lists; the link does not show what it leads to.
    const root = await h.call('POST', '/api/fs/list', { token: h.adminToken, body: { path: '/local' } });
    assert.equal(envelope(root, 'list /local').code, 200);
    assert.ok(!root.body.includes('secret.txt'));
    for (const path of ['/local/escape/secret.txt', '/local/escape/inner/deep.txt', '/local/escape/inner']) {
      const res = await h.call('POST', '/api/fs/get', { token: h.adminToken, body: { path } });
      const env = envelope(res, `get ${path}`);
      assert.ok([403, 404].includes(env.code), `get ${path} → ${env.code}`);
      assert.ok(!res.body.includes('SECRET'));
    }
    // The link itself may be shown, but only as what list shows: an opaque empty non-folder.
    const link = await h.call('POST', '/api/fs/get', {
      token: h.adminToken,
      body: { path: '/local/escape' },
    });
    const linkEnv = envelope<{ is_dir: boolean; size: number }>(link, 'get /local/escape');
    if (linkEnv.code === 200) {
      assert.equal(linkEnv.data.is_dir, false, 'the link is not shown as a folder');
      assert.equal(linkEnv.data.size, 0, 'nor with its target’s size');
    } else {
      assert.ok([403, 404].includes(linkEnv.code), `get /local/escape → ${linkEnv.code}`);
    }
    for (const url of [
      '/d/local/escape/secret.txt',
      '/d/local/escape/inner/deep.txt',
      '/d/local/escape/inner',
    ]) {
      for (const method of ['GET', 'HEAD'] as const) {
        for (const headers of [{}, { range: 'bytes=0-3' }] as Record<string, string>[]) {
          const res = await h.call(method, url, { token: h.adminToken, headers });
          assert.ok([403, 404].includes(res.statusCode), `${method} ${url} → ${res.statusCode}`);
          assert.ok(!res.body.includes('SECRET') && !res.body.includes('TOP-'), `${url} leaks`);
        }
      }
    }
    // The link itself: refused, or an empty file — never the target's bytes.
    const linkRead = await h.call('GET', '/d/local/escape', { token: h.adminToken });
    assert.ok(
      [200, 400, 403, 404].includes(linkRead.statusCode),
      `GET /d/local/escape → ${linkRead.statusCode}`,
    );
    if (linkRead.statusCode === 200) assert.equal(linkRead.body, '');
    await assertNothingEscaped();
  });

  it('does not write through a symlink out of the storage: upload, mkdir, rename, remove', async () => {
    for (const path of [
      `/local/escape/${marker}.txt`,
      `/local/escape/inner/${marker}.txt`,
      `/local/escape/new/${marker}.txt`,
      '/local/escape/secret.txt',
      '/local/escape',
    ]) {
      for (const asTask of [true, false]) {
        const res = await h.call('PUT', '/api/fs/put', {
          token: h.adminToken,
          body: Buffer.from(`overwritten ${marker}`),
          headers: { 'file-path': encodeURIComponent(path), ...(asTask && { 'as-task': 'true' }) },
        });
        const env = envelope<{ task?: { id: string } }>(res, `PUT ${path}`);
        if (env.code === 200 && env.data?.task) {
          const done = await t.settled('upload', env.data.task.id);
          assert.equal(done.state, 'failed', `PUT ${path} must not succeed`);
        } else {
          assert.ok([400, 403].includes(env.code), `PUT ${path} → ${env.code} ${env.message}`);
        }
      }
    }
    for (const [url, body] of [
      ['/api/fs/mkdir', { path: `/local/escape/${marker}` }],
      ['/api/fs/mkdir', { path: `/local/escape/inner/${marker}/deeper` }],
      ['/api/fs/rename', { path: '/local/escape/secret.txt', name: `${marker}.txt` }],
      ['/api/fs/rename', { path: '/local/escape/inner', name: marker }],
      ['/api/fs/remove', { dir: '/local/escape', names: ['secret.txt'] }],
      ['/api/fs/remove', { dir: '/local/escape', names: ['inner'] }],
      ['/api/fs/remove', { dir: '/local/escape/inner', names: ['deep.txt'] }],
    ] as const) {
      const env = await t.post(h.adminToken, url, body);
      assert.notEqual(env.code, 200, `${url} ${JSON.stringify(body)} succeeded`);
    }
    await assertNothingEscaped();
  });

  it('does not copy or move from or into a symlink out of the storage', async () => {
    const attempts: [string, Record<string, unknown>][] = [
      ['/api/fs/copy', { src_dir: '/local/escape', dst_dir: '/local/stolen', names: ['secret.txt'] }],
      ['/api/fs/copy', { src_dir: '/local/escape', dst_dir: '/local/stolen', names: ['inner'] }],
      ['/api/fs/copy', { src_dir: '/local', dst_dir: '/local/stolen', names: ['escape'] }],
      ['/api/fs/copy', { src_dir: '/local', dst_dir: '/local/stolen', names: ['secret-link.txt'] }],
      ['/api/fs/copy', { src_dir: '/local', dst_dir: '/other/stolen', names: ['secret-link.txt'] }],
      ['/api/fs/copy', { src_dir: '/local', dst_dir: '/other/stolen', names: ['escape'] }],
      ['/api/fs/copy', { src_dir: '/local/src', dst_dir: '/local/escape', names: ['f.txt'] }],
      ['/api/fs/copy', { src_dir: '/local/src', dst_dir: '/local/escape/inner', names: ['f.txt'] }],
      ['/api/fs/copy', { src_dir: '/local/src', dst_dir: `/local/escape/${marker}`, names: ['f.txt'] }],
      ['/api/fs/move', { src_dir: '/local/escape', dst_dir: '/local/stolen', names: ['secret.txt'] }],
      ['/api/fs/move', { src_dir: '/local', dst_dir: '/other/stolen', names: ['escape'] }],
      ['/api/fs/move', { src_dir: '/local', dst_dir: '/other/stolen', names: ['secret-link.txt'] }],
      ['/api/fs/move', { src_dir: '/local/src', dst_dir: '/local/escape', names: ['f.txt'] }],
    ];
    for (const [route, body] of attempts) {
      const env = await t.post<{ tasks?: TaskView[] }>(h.adminToken, route, body);
      if (env.code === 200) {
        // Accepted up front: the task itself must fail.
        for (const task of env.data.tasks ?? []) {
          const type = route.endsWith('move') ? 'move' : 'copy';
          const done = await t.settled(type, task.id);
          if (process.env.FERRY_TEST_DEBUG) console.log(route, JSON.stringify(body), done.state, done.error);
          assert.equal(done.state, 'failed', `${route} ${JSON.stringify(body)}`);
        }
      } else {
        assert.ok([400, 403, 404].includes(env.code), `${route} ${JSON.stringify(body)} → ${env.code}`);
      }
    }
    assert.equal(await readFile(join(files, 'src', 'f.txt'), 'utf8'), 'plain', 'the source stays');
    await assertNoSecretInside();
    await assertNothingEscaped();
  });

  it('does not read through a symlink out of the storage when copying or moving a folder that holds one', async () => {
    await mkdir(join(files, 'tree'), { recursive: true });
    await writeFile(join(files, 'tree', 'ok.txt'), 'fine');
    await symlink(join(outside, 'secret.txt'), join(files, 'tree', 'leak.txt'));
    await symlink(join(outside, 'inner'), join(files, 'tree', 'leakdir'));
    for (const [route, dst] of [
      ['/api/fs/copy', '/local/treecopy'],
      ['/api/fs/copy', '/other/treecopy'],
    ] as const) {
      const [task] = await t.copy(h.adminToken, { src_dir: '/local', dst_dir: dst, names: ['tree'] }, route);
      const done = await t.settled('copy', task!.id);
      if (process.env.FERRY_TEST_DEBUG) console.log(route, dst, done.state, done.error);
    }
    for (const p of [...(await walk(files)), ...(await walk(join(h.dataDir, 'other')))]) {
      const info = await lstat(p);
      if (info.isFile()) {
        const text = await readFile(p, 'utf8');
        assert.ok(!text.includes('SECRET'), `secret copied into ${relative(h.dataDir, p)}`);
      }
    }
    await assertNothingEscaped();
    assert.equal((await h.call('GET', '/ping')).body, 'pong');
  });

  it('copies a link that stays inside the storage as the file it leads to', async () => {
    await mkdir(join(files, 'linked', 'sub'), { recursive: true });
    await writeFile(join(files, 'linked', 'sub', 'target.txt'), 'the target');
    await symlink(join(files, 'linked', 'sub', 'target.txt'), join(files, 'linked', 'alias.txt'));
    const [task] = await t.copy(h.adminToken, {
      src_dir: '/local',
      dst_dir: '/local/linkcopy',
      names: ['linked'],
    });
    const done = await t.settled('copy', task!.id);
    assert.equal(done.state, 'succeeded', done.error);
    assert.equal(done.processed_files, 2);
    const copied = join(files, 'linkcopy', 'linked', 'alias.txt');
    assert.ok((await lstat(copied)).isFile(), 'the copy is a file, not a link');
    assert.equal(await readFile(copied, 'utf8'), 'the target');
  });

  it('refuses to copy through a link loop instead of nesting the same folders without end; the rest of the tree is copied', async () => {
    // up → its own parent; x and y lead to each other's folder.
    await mkdir(join(files, 'looped', 'inner'), { recursive: true });
    await writeFile(join(files, 'looped', 'inner', 'f.txt'), 'f');
    await symlink(join(files, 'looped'), join(files, 'looped', 'inner', 'up'));
    await mkdir(join(files, 'mutual', 'a'), { recursive: true });
    await mkdir(join(files, 'mutual', 'b'));
    await symlink(join(files, 'mutual', 'b'), join(files, 'mutual', 'a', 'x'));
    await symlink(join(files, 'mutual', 'a'), join(files, 'mutual', 'b', 'y'));
    for (const name of ['looped', 'mutual']) {
      const t0 = Date.now();
      const [task] = await t.copy(h.adminToken, {
        src_dir: '/local',
        dst_dir: '/local/loopcopy',
        names: [name],
      });
      const done = await t.settled('copy', task!.id);
      assert.equal(done.state, 'failed', `${name}: ${done.error}`);
      assert.match(done.error, /link loop/, name);
      // Each loop is one failed item, and the walk goes on past it.
      const loops = name === 'looped' ? ['/inner/up'] : ['/a/x/y', '/b/y/x'];
      assert.deepEqual(
        (done.failures ?? []).map((f) => f.path).sort(),
        loops,
        `${name}: ${JSON.stringify(done.failures)}`,
      );
      for (const f of done.failures ?? []) assert.match(f.error, /link loop/, name);
      console.log(`# ${name}: refused in ${Date.now() - t0} ms: ${done.error}`);
      const deepest = Math.max(
        ...(await walk(join(files, 'loopcopy', name))).map((p) => relative(files, p).split('/').length),
      );
      assert.ok(deepest <= 6, `${name}: the copy nested ${deepest} levels deep`);
    }
    assert.equal(await readFile(join(files, 'loopcopy', 'looped', 'inner', 'f.txt'), 'utf8'), 'f');
    // The folders themselves list, and delete, as usual (a delete never follows a link).
    const listed = await t.post(h.adminToken, '/api/fs/list', { path: '/local/looped/inner' });
    assert.equal(listed.code, 200, listed.message);
    const removal = await t.post(h.adminToken, '/api/fs/remove', {
      dir: '/local',
      names: ['looped', 'mutual', 'loopcopy'],
    });
    assert.equal(removal.code, 200, removal.message);
    for (const name of ['looped', 'mutual', 'loopcopy'])
      assert.equal(await lstat(join(files, name)).catch(() => null), null, `${name} removed`);
    await assertNothingEscaped();
  });

  it('never deletes through a link to a folder: a delete or a move removes the link, not what it leads to', async () => {
    for (const keep of ['keep-d', 'keep-m']) {
      await mkdir(join(files, keep), { recursive: true });
      await writeFile(join(files, keep, 'important.txt'), 'do not lose me');
    }
    await mkdir(join(files, 'doomed'), { recursive: true });
    await writeFile(join(files, 'doomed', 'own.txt'), 'mine');
    await symlink(join(files, 'keep-d'), join(files, 'doomed', 'shortcut'));
    await mkdir(join(files, 'moving'), { recursive: true });
    await writeFile(join(files, 'moving', 'own.txt'), 'mine');
    await symlink(join(files, 'keep-m'), join(files, 'moving', 'shortcut'));

    const keptAfter = async (what: string, keep: string) =>
      assert.equal(await readFile(join(files, keep, 'important.txt'), 'utf8'), 'do not lose me', what);
    const gone = async (name: string) =>
      assert.equal(await lstat(join(files, name)).catch(() => null), null, `${name} is still there`);
    const remove = async (name: string) => {
      const res = await t.post(h.adminToken, '/api/fs/remove', { dir: '/local', names: [name] });
      assert.equal(res.code, 200, res.message);
      await gone(name);
    };
    // Across mounts a move copies, then deletes the source: a link's folder is copied as a
    // folder, and only the link is deleted.
    const move = async (name: string) => {
      const [task] = await t.copy(
        h.adminToken,
        { src_dir: '/local', dst_dir: '/other', names: [name] },
        '/api/fs/move',
      );
      const done = await t.settled('move', task!.id);
      assert.equal(done.state, 'succeeded', done.error);
      await gone(name);
      return join(h.dataDir, 'other', name);
    };

    await remove('doomed');
    await keptAfter('a delete of a folder holding a link to it', 'keep-d');
    const moved = await move('moving');
    await keptAfter('a move of a folder holding a link to it', 'keep-m');
    assert.equal(await readFile(join(moved, 'shortcut', 'important.txt'), 'utf8'), 'do not lose me');
    assert.equal(await readFile(join(moved, 'own.txt'), 'utf8'), 'mine');

    // The same when the link is the item itself.
    await symlink(join(files, 'keep-d'), join(files, 'alias-d'));
    await symlink(join(files, 'keep-m'), join(files, 'alias-m'));
    await remove('alias-d');
    await keptAfter('a delete of a link to it', 'keep-d');
    const movedLink = await move('alias-m');
    await keptAfter('a move of a link to it', 'keep-m');
    assert.equal(await readFile(join(movedLink, 'important.txt'), 'utf8'), 'do not lose me');
  });

  it('still answers /ping after all of it', async () => {
    const res = await h.call('GET', '/ping');
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, 'pong');
    const list = await t.post(h.adminToken, '/api/fs/list', { path: '/local/src' });
    assert.equal(list.code, 200);
  });
});
