import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { Principal } from '../src/auth/roles.ts';
import { TASK_KINDS, type TaskKind } from '../src/config.ts';
import type { Task } from '../src/tasks/model.ts';
import type { CreateTask } from '../src/tasks/service.ts';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';

/**
 * The AList task API as a user (or an AList script) meets it: every type × action on both
 * prefixes in the seed's envelope, real upload/copy/move lifecycles, paging of long lists, and
 * the live event stream.
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
  'sync',
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

/** The seed's ten states. */
const STATES = [
  'pending',
  'running',
  'succeeded',
  'canceling',
  'canceled',
  'errored',
  'failing',
  'failed',
  'waiting_retry',
  'before_retry',
];
const DONE = ['succeeded', 'canceled', 'failed'];

/** The seed's task fields. */
interface SeedTask {
  id: string;
  name: string;
  creator: string;
  creator_role: number;
  state: string;
  status: string;
  progress: number;
  start_time: string | null;
  end_time: string | null;
  total_bytes: number;
  error: string;
}

interface Envelope<T = unknown> {
  code: number;
  message: string;
  data: T;
}

const NOT_FOUND = { code: 404, message: 'task not found', data: null };
const SUCCESS_NULL = { code: 200, message: 'success', data: null };

function isIsoTime(value: unknown): boolean {
  return typeof value === 'string' && Number.isFinite(Date.parse(value)) && /^\d{4}-\d\d-\d\dT/.test(value);
}

/** Every seed field, spelled as the seed spells it, with the seed's type. */
function assertSeedTask(value: unknown, where: string): asserts value is SeedTask {
  assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), `${where}: task object`);
  const t = value as Record<string, unknown>;
  for (const key of [
    'id',
    'name',
    'creator',
    'creator_role',
    'state',
    'status',
    'progress',
    'start_time',
    'end_time',
    'total_bytes',
    'error',
  ]) {
    assert.ok(Object.hasOwn(t, key), `${where}: field "${key}" missing in ${JSON.stringify(t)}`);
  }
  assert.equal(typeof t.id, 'string', `${where}: id`);
  assert.ok((t.id as string).length > 0, `${where}: id not empty`);
  assert.equal(typeof t.name, 'string', `${where}: name`);
  assert.equal(typeof t.creator, 'string', `${where}: creator`);
  assert.ok(
    Number.isInteger(t.creator_role) && [0, 1, 2].includes(t.creator_role as number),
    `${where}: role`,
  );
  assert.ok(STATES.includes(t.state as string), `${where}: state ${String(t.state)}`);
  assert.equal(typeof t.status, 'string', `${where}: status`);
  assert.equal(typeof t.progress, 'number', `${where}: progress`);
  assert.ok((t.progress as number) >= 0 && (t.progress as number) <= 100, `${where}: progress range`);
  assert.ok(t.start_time === null || isIsoTime(t.start_time), `${where}: start_time ${String(t.start_time)}`);
  assert.ok(t.end_time === null || isIsoTime(t.end_time), `${where}: end_time ${String(t.end_time)}`);
  assert.ok(Number.isInteger(t.total_bytes) && (t.total_bytes as number) >= 0, `${where}: total_bytes`);
  assert.equal(typeof t.error, 'string', `${where}: error`);
  // A finished task has an end time; an unfinished one has none yet.
  if (DONE.includes(t.state as string)) assert.ok(isIsoTime(t.end_time), `${where}: done task has end_time`);
  else assert.equal(t.end_time, null, `${where}: unfinished task has no end_time`);
}

/** A reply must be HTTP 200 with exactly the envelope's three keys. */
function envelopeOf<T>(res: { statusCode: number; body: string }, where: string): Envelope<T> {
  assert.equal(res.statusCode, 200, `${where}: HTTP ${res.statusCode} ${res.body.slice(0, 200)}`);
  const env = JSON.parse(res.body) as Envelope<T>;
  assert.deepEqual(Object.keys(env).sort(), ['code', 'data', 'message'], `${where}: envelope keys`);
  assert.ok(Number.isInteger(env.code), `${where}: code is an integer`);
  assert.equal(typeof env.message, 'string', `${where}: message is a string`);
  return env;
}

/** Calls of the task API for one harness. */
function taskApi(h: Harness) {
  const act = async <T = unknown>(
    token: string | null,
    type: string,
    action: Action,
    options: { tid?: string; body?: unknown; query?: string; prefix?: string } = {},
  ): Promise<Envelope<T>> => {
    const params = [options.tid !== undefined ? `tid=${encodeURIComponent(options.tid)}` : '', options.query]
      .filter(Boolean)
      .join('&');
    const url = `${options.prefix ?? '/api/task'}/${type}/${action}${params ? `?${params}` : ''}`;
    const res = await h.call(ACTIONS[action], url, {
      token,
      ...(options.body !== undefined && { body: options.body }),
    });
    return envelopeOf<T>(res, `${ACTIONS[action]} ${url}`);
  };
  const info = (token: string, type: string, id: string) => act<SeedTask[]>(token, type, 'info', { tid: id });
  const list = async (token: string, type: string, which: 'done' | 'undone', query?: string) => {
    const env = await act<SeedTask[]>(token, type, which, query ? { query } : {});
    assert.equal(env.code, 200, `${type}/${which}: ${env.message}`);
    assert.ok(Array.isArray(env.data), `${type}/${which}: data is an array`);
    for (const t of env.data) assertSeedTask(t, `${type}/${which}`);
    return env.data;
  };
  /** The task once it is finished (succeeded, canceled or failed). */
  const settled = (token: string, type: string, id: string) =>
    waitFor(
      async () => {
        const env = await info(token, type, id);
        const t = env.data?.[0];
        return t && DONE.includes(t.state) ? t : undefined;
      },
      20_000,
      `${type} task ${id} to finish`,
    );
  const copy = async (
    token: string,
    body: Record<string, unknown>,
    route: '/api/fs/copy' | '/api/fs/move' = '/api/fs/copy',
  ) => {
    const env = envelopeOf<{ tasks: SeedTask[] }>(await h.call('POST', route, { token, body }), route);
    assert.equal(env.code, 200, `${route} ${JSON.stringify(body)}: ${env.message}`);
    assert.ok(Array.isArray(env.data.tasks), `${route}: data.tasks`);
    for (const t of env.data.tasks) assertSeedTask(t, route);
    return env.data.tasks;
  };
  const upload = async (
    token: string,
    path: string,
    content: Buffer,
    headers: Record<string, string> = {},
  ) => {
    const res = await h.call('PUT', '/api/fs/put', {
      token,
      body: content,
      headers: {
        'file-path': encodeURIComponent(path),
        'as-task': 'true',
        'content-type': 'application/octet-stream',
        ...headers,
      },
    });
    const env = envelopeOf<{ task: SeedTask }>(res, `PUT ${path}`);
    assert.equal(env.code, 200, `upload ${path}: ${env.message}`);
    assertSeedTask(env.data.task, 'upload reply');
    return env.data.task;
  };
  return { act, info, list, settled, copy, upload };
}

async function principalOf(h: Harness, token: string): Promise<Principal> {
  return h.core.auth.authenticate(token);
}

/** A task of `type` that the engine cannot finish on its own (its source does not exist). */
function fakeSpec(type: TaskKind, n: number): CreateTask {
  const payloads: Record<TaskKind, Record<string, unknown>> = {
    upload: { dst: `/local/matrix/${n}.txt`, overwrite: false },
    copy: { src: `/local/none-${n}`, dstDir: '/local/matrix' },
    move: { src: `/local/none-${n}`, dstDir: '/local/matrix' },
    delete: { path: `/local/none-${n}` },
    offline_download: { url: `http://127.0.0.1:9/${n}`, dstDir: '/local/matrix' },
    offline_download_transfer: { src: `/tmp/${n}`, dstDir: '/local/matrix' },
    decompress: { src: `/local/none-${n}.zip`, dstDir: '/local/matrix' },
    decompress_upload: { src: `/local/none-${n}.zip`, dstDir: '/local/matrix' },
    sync: {
      job: { id: `j${n}`, name: 'matrix' },
      mode: 'sync',
      srcDir: `/local/none-${n}`,
      dstDir: '/local/matrix',
    },
  };
  return { kind: type, name: `${type} matrix task ${n}`, payload: payloads[type] };
}

/** Hold every kind's workers at 0 while `body` runs, so tasks stay exactly where the test puts them. */
async function withoutWorkers<T>(h: Harness, kinds: readonly TaskKind[], body: () => Promise<T>): Promise<T> {
  const saved = h.core.runner.getLimits();
  for (const k of kinds) h.core.runner.setLimit(k, 0);
  try {
    return await body();
  } finally {
    for (const k of kinds) h.core.runner.setLimit(k, saved[k]);
  }
}

describe('task API: every type × action on both prefixes', () => {
  let h: Harness;
  let api: ReturnType<typeof taskApi>;
  before(async () => {
    h = await startHarness();
    api = taskApi(h);
  });
  after(() => h.close());

  it('knows exactly the seed’s task types, plus move, delete and sync', () => {
    assert.deepEqual([...TASK_KINDS].sort(), [...TYPES].sort());
  });

  it('answers all twelve actions for all nine types on /api/task and /api/admin/task in the seed’s shapes', async () => {
    const admin = await principalOf(h, h.adminToken);
    await withoutWorkers(h, TASK_KINDS, async () => {
      for (const prefix of PREFIXES) {
        for (const type of TYPES) {
          const where = (a: string) => `${prefix}/${type}/${a}`;
          const act = <T = unknown>(action: Action, options: { tid?: string; body?: unknown } = {}) =>
            api.act<T>(h.adminToken, type, action, { ...options, prefix });
          const stateOf = async (id: string) => {
            const env = await act<SeedTask[]>('info', { tid: id });
            return env.code === 200 ? env.data[0]?.state : `code ${env.code}`;
          };
          const created = await h.core.tasks.create(
            admin,
            [1, 2, 3].map((n) => fakeSpec(type, n)),
          );
          assert.equal(created.length, 3);
          const [t1, t2, t3] = created as [Task, Task, Task];

          // info: a one-element array holding the task.
          const info = await act<SeedTask[]>('info', { tid: t1.id });
          assert.equal(info.code, 200, where('info'));
          assert.equal(info.message, 'success');
          assert.ok(Array.isArray(info.data) && info.data.length === 1, `${where('info')}: one element`);
          const shown = info.data[0];
          assertSeedTask(shown, where('info'));
          assert.equal(shown.id, t1.id);
          assert.equal(shown.name, `${type} matrix task 1`);
          assert.equal(shown.creator, 'admin');
          assert.equal(shown.creator_role, 2);
          assert.equal(shown.state, 'pending');
          assert.equal(shown.progress, 0);
          assert.equal(shown.start_time, null, 'a task that never ran has no start_time');
          assert.equal(shown.error, '');

          // undone lists the three pending tasks; done does not.
          const undone = await act<SeedTask[]>('undone');
          assert.equal(undone.code, 200, where('undone'));
          for (const t of undone.data) assertSeedTask(t, where('undone'));
          for (const t of [t1, t2, t3])
            assert.ok(
              undone.data.some((u) => u.id === t.id),
              where('undone'),
            );
          assert.ok(undone.data.every((u) => !DONE.includes(u.state)));

          // cancel → data null; the task is now in done, canceled, with an end time.
          assert.deepEqual(await act('cancel', { tid: t1.id }), SUCCESS_NULL, where('cancel'));
          const done = await act<SeedTask[]>('done');
          assert.equal(done.code, 200, where('done'));
          for (const t of done.data) assertSeedTask(t, where('done'));
          const canceled = done.data.find((t) => t.id === t1.id);
          assert.equal(canceled?.state, 'canceled', where('done'));
          assert.ok(done.data.every((t) => DONE.includes(t.state)));
          assert.ok(!done.data.some((t) => t.id === t2.id), 'a pending task is not done');

          // retry → data null; the task is queued again.
          assert.deepEqual(await act('retry', { tid: t1.id }), SUCCESS_NULL, where('retry'));
          assert.equal(await stateOf(t1.id), 'before_retry');

          // *_some: data is an object id → message, only for the ids that failed.
          const cs = await act<Record<string, string>>('cancel_some', { body: [t1.id, 'no-such-task'] });
          assert.deepEqual(cs, { code: 200, message: 'success', data: { 'no-such-task': 'task not found' } });
          assert.equal(await stateOf(t1.id), 'canceled');
          const rs = await act<Record<string, string>>('retry_some', { body: ['no-such-task', t1.id] });
          assert.deepEqual(rs, { code: 200, message: 'success', data: { 'no-such-task': 'task not found' } });
          assert.equal(await stateOf(t1.id), 'before_retry');

          // The clear/retry-all actions answer data null and leave unfinished tasks alone.
          assert.deepEqual(await act('retry_failed'), SUCCESS_NULL, where('retry_failed'));
          assert.deepEqual(await act('clear_succeeded'), SUCCESS_NULL, where('clear_succeeded'));
          assert.equal(await stateOf(t1.id), 'before_retry');
          assert.equal(await stateOf(t2.id), 'pending');

          // delete → data null; the task is gone.
          assert.deepEqual(await act('cancel', { tid: t1.id }), SUCCESS_NULL);
          assert.deepEqual(await act('delete', { tid: t1.id }), SUCCESS_NULL, where('delete'));
          assert.deepEqual(await act('info', { tid: t1.id }), NOT_FOUND, 'deleted task is not found');

          // delete_some deletes an unfinished task too (canceled, then removed).
          const ds = await act<Record<string, string>>('delete_some', { body: [t2.id, 'no-such-task'] });
          assert.deepEqual(ds, { code: 200, message: 'success', data: { 'no-such-task': 'task not found' } });
          assert.deepEqual(await act('info', { tid: t2.id }), NOT_FOUND);

          // clear_done removes the canceled one.
          assert.deepEqual(await act('cancel', { tid: t3.id }), SUCCESS_NULL);
          assert.deepEqual(await act('clear_done'), SUCCESS_NULL, where('clear_done'));
          assert.deepEqual(await act('info', { tid: t3.id }), NOT_FOUND, 'cleared task is not found');
          assert.deepEqual((await act('done')).data, [], `${where('done')} empty at the end`);
          assert.deepEqual((await act('undone')).data, [], `${where('undone')} empty at the end`);
        }
      }
    });
  });

  it('answers tid actions on an unknown id with {"code":404,"message":"task not found","data":null}', async () => {
    for (const prefix of PREFIXES) {
      for (const type of TYPES) {
        for (const action of ['info', 'delete', 'cancel', 'retry'] as const) {
          assert.deepEqual(
            await api.act(h.adminToken, type, action, { tid: 'no-such-task', prefix }),
            NOT_FOUND,
            `${prefix}/${type}/${action}`,
          );
        }
      }
    }
  });

  it('finds a task only under its own type', async () => {
    const admin = await principalOf(h, h.adminToken);
    await withoutWorkers(h, TASK_KINDS, async () => {
      const [task] = await h.core.tasks.create(admin, [fakeSpec('copy', 9)]);
      const id = task!.id;
      for (const type of TYPES.filter((t) => t !== 'copy')) {
        assert.deepEqual(await api.info(h.adminToken, type, id), NOT_FOUND, type);
        assert.deepEqual(await api.act(h.adminToken, type, 'cancel', { tid: id }), NOT_FOUND, type);
        const some = await api.act(h.adminToken, type, 'cancel_some', { body: [id] });
        assert.deepEqual(some.data, { [id]: 'task not found' }, type);
        assert.ok(!(await api.list(h.adminToken, type, 'undone')).some((t) => t.id === id), type);
      }
      assert.equal((await api.info(h.adminToken, 'copy', id)).data[0]?.state, 'pending', 'untouched');
      assert.deepEqual(await api.act(h.adminToken, 'copy', 'delete', { tid: id }), SUCCESS_NULL);
    });
  });

  it('answers an unknown type or action with code 400 and a clear message, never a 500', async () => {
    for (const prefix of PREFIXES) {
      for (const type of [
        'nope',
        'Copy',
        'UPLOAD',
        '__proto__',
        'constructor',
        'toString',
        'copy%20',
        'tasks',
      ]) {
        for (const method of ['GET', 'POST'] as const) {
          const res = await h.call(method, `${prefix}/${type}/info?tid=x`, { token: h.adminToken });
          const env = envelopeOf(res, `${method} ${prefix}/${type}/info`);
          assert.equal(env.code, 400, `${type}: ${env.message}`);
          assert.match(env.message, /unknown task type/, type);
          assert.ok(env.message.includes('copy') && env.message.includes('upload'), 'lists the known types');
          assert.equal(env.data, null);
        }
      }
      for (const action of [
        'nope',
        'INFO',
        'Done',
        '__proto__',
        'constructor',
        'hasOwnProperty',
        'toString',
        'valueOf',
        'list',
        'events',
      ]) {
        for (const method of ['GET', 'POST'] as const) {
          const res = await h.call(method, `${prefix}/copy/${action}?tid=x`, {
            token: h.adminToken,
            body: [],
          });
          const env = envelopeOf(res, `${method} ${prefix}/copy/${action}`);
          assert.equal(env.code, 400, `${action}: ${env.message}`);
          assert.match(env.message, /unknown task action/, action);
          assert.ok(env.message.includes('retry_some'), 'lists the known actions');
          assert.equal(env.data, null);
        }
      }
    }
  });

  it('answers a wrong HTTP method with a non-200 code, never a 500, and does not act', async () => {
    const admin = await principalOf(h, h.adminToken);
    await withoutWorkers(h, TASK_KINDS, async () => {
      const [task] = await h.core.tasks.create(admin, [fakeSpec('copy', 10)]);
      const id = task!.id;
      for (const prefix of PREFIXES) {
        for (const type of ['copy', 'upload', 'decompress']) {
          for (const [action, right] of Object.entries(ACTIONS)) {
            const wrong = (['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const).filter((m) => m !== right);
            for (const method of wrong) {
              const res = await h.call(method, `${prefix}/${type}/${action}?tid=${id}`, {
                token: h.adminToken,
                ...(method !== 'GET' && method !== 'DELETE' && { body: [id] }),
              });
              const where = `${method} ${prefix}/${type}/${action}`;
              assert.ok(res.statusCode < 500, `${where}: HTTP ${res.statusCode}`);
              const env = JSON.parse(res.body) as Envelope;
              assert.ok(env.code !== 200 && env.code < 500, `${where}: code ${env.code} ${env.message}`);
              assert.ok(env.message.length > 0, `${where}: a message`);
            }
          }
        }
      }
      // Nothing above canceled, retried or deleted the task.
      const still = await api.info(h.adminToken, 'copy', id);
      assert.equal(still.data[0]?.state, 'pending');
      await api.act(h.adminToken, 'copy', 'delete', { tid: id });
    });
  });
});

describe('task API: real lifecycles through the file API', () => {
  let h: Harness;
  let api: ReturnType<typeof taskApi>;
  let files: string;
  const content = (name: string) => `content of ${name}\n`;
  const put = async (rel: string, text: string) => {
    await mkdir(join(files, rel, '..'), { recursive: true });
    await writeFile(join(files, rel), text);
  };

  before(async () => {
    h = await startHarness();
    api = taskApi(h);
    files = join(h.dataDir, 'files');
    for (const n of ['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt']) await put(`src/${n}`, content(n));
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
  after(() => h.close());

  it('runs an upload as a task: succeeded, progress 100, right total_bytes, the seed’s name', async () => {
    const body = Buffer.from('ferry upload body\n'.repeat(1000));
    const created = await api.upload(h.adminToken, '/local/up load/ünï côdé.txt', body);
    assert.equal(created.name, 'upload ünï côdé.txt to [/local](/up load)');
    assert.equal(created.creator, 'admin');
    assert.equal(created.creator_role, 2);
    assert.equal(created.total_bytes, body.length);
    const done = await api.settled(h.adminToken, 'upload', created.id);
    assert.equal(done.state, 'succeeded', done.error);
    assert.equal(done.progress, 100);
    assert.equal(done.total_bytes, body.length);
    assert.equal(done.error, '');
    assert.equal(done.name, 'upload ünï côdé.txt to [/local](/up load)');
    assert.ok(isIsoTime(done.start_time) && isIsoTime(done.end_time));
    assert.ok(Date.parse(done.end_time!) >= Date.parse(done.start_time!), 'ends after it starts');
    assert.deepEqual(await readFile(join(files, 'up load', 'ünï côdé.txt')), body);

    // Top-level file: the folder inside the storage is `/`.
    const top = await api.upload(h.adminToken, '/local/top.bin', Buffer.from([1, 2, 3]));
    assert.equal(top.name, 'upload top.bin to [/local](/)');
    // A second storage is named by its own mount path.
    const other = await api.upload(h.adminToken, '/other/deep/er/x.txt', Buffer.from('x'));
    assert.equal(other.name, 'upload x.txt to [/other](/deep/er)');
    assert.equal((await api.settled(h.adminToken, 'upload', top.id)).state, 'succeeded');
    assert.equal((await api.settled(h.adminToken, 'upload', other.id)).state, 'succeeded');

    const done2 = await api.list(h.adminToken, 'upload', 'done');
    for (const id of [created.id, top.id, other.id])
      assert.ok(
        done2.some((t) => t.id === id),
        'in done',
      );
    assert.ok(!(await api.list(h.adminToken, 'upload', 'undone')).some((t) => t.id === created.id));
    // An upload is not a copy.
    assert.deepEqual(await api.info(h.adminToken, 'copy', created.id), NOT_FOUND);
  });

  it('runs copies as tasks named `copy [mount](src) to [mount](dst dir)` with the right totals', async () => {
    const tasks = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/dst',
      names: ['a.txt', 'b.txt'],
    });
    assert.equal(tasks.length, 2);
    assert.deepEqual(
      tasks.map((t) => t.name),
      ['copy [/local](/src/a.txt) to [/local](/dst)', 'copy [/local](/src/b.txt) to [/local](/dst)'],
    );
    for (const t of tasks) {
      assert.ok(['pending', 'running', 'succeeded'].includes(t.state), t.state);
      const done = await api.settled(h.adminToken, 'copy', t.id);
      assert.equal(done.state, 'succeeded', done.error);
      assert.equal(done.progress, 100);
      assert.equal(done.total_bytes, content('a.txt').length);
      assert.equal(done.error, '');
      assert.ok(isIsoTime(done.start_time) && isIsoTime(done.end_time));
    }
    assert.equal(await readFile(join(files, 'dst', 'a.txt'), 'utf8'), content('a.txt'));
    assert.equal(await readFile(join(files, 'dst', 'b.txt'), 'utf8'), content('b.txt'));

    // Across storages, and a whole folder.
    const [cross] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/other/in',
      names: ['c.txt'],
    });
    assert.equal(cross!.name, 'copy [/local](/src/c.txt) to [/other](/in)');
    const [tree] = await api.copy(h.adminToken, { src_dir: '/local', dst_dir: '/other', names: ['src'] });
    assert.equal(tree!.name, 'copy [/local](/src) to [/other](/)');
    assert.equal((await api.settled(h.adminToken, 'copy', cross!.id)).state, 'succeeded');
    const treeDone = await api.settled(h.adminToken, 'copy', tree!.id);
    assert.equal(treeDone.state, 'succeeded', treeDone.error);
    const treeBytes = ['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt'].reduce(
      (n, f) => n + content(f).length,
      0,
    );
    assert.equal(treeDone.total_bytes, treeBytes);
    assert.equal(treeDone.progress, 100);
    assert.equal(await readFile(join(h.dataDir, 'other', 'src', 'e.txt'), 'utf8'), content('e.txt'));
  });

  it('names a general user’s task after that user, role 0, and splits done/undone right', async () => {
    const carol = await h.user('carol');
    await withoutWorkers(h, ['copy'], async () => {
      const [t] = await api.copy(carol, { src_dir: '/local/src', dst_dir: '/local/carol', names: ['a.txt'] });
      assert.equal(t!.creator, 'carol');
      assert.equal(t!.creator_role, 0);
      assert.equal(t!.state, 'pending');
      assert.ok(
        (await api.list(carol, 'copy', 'undone')).some((u) => u.id === t!.id),
        'pending is undone',
      );
      assert.ok(!(await api.list(carol, 'copy', 'done')).some((u) => u.id === t!.id), 'pending is not done');
      // From here the worker may run it.
      h.core.runner.setLimit('copy', 8);
      const done = await api.settled(carol, 'copy', t!.id);
      assert.equal(done.state, 'succeeded');
      assert.ok(
        (await api.list(carol, 'copy', 'done')).some((u) => u.id === t!.id),
        'finished is done',
      );
      assert.ok(!(await api.list(carol, 'copy', 'undone')).some((u) => u.id === t!.id));
    });
  });

  it('deletes a finished task: info then answers 404 "task not found"', async () => {
    const [t] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/del',
      names: ['a.txt'],
    });
    assert.equal((await api.settled(h.adminToken, 'copy', t!.id)).state, 'succeeded');
    assert.deepEqual(await api.act(h.adminToken, 'copy', 'delete', { tid: t!.id }), SUCCESS_NULL);
    assert.deepEqual(await api.info(h.adminToken, 'copy', t!.id), NOT_FOUND);
    assert.ok(!(await api.list(h.adminToken, 'copy', 'done')).some((u) => u.id === t!.id));
    assert.deepEqual(await api.act(h.adminToken, 'copy', 'delete', { tid: t!.id }), NOT_FOUND, 'twice');
    // Deleting the task record leaves the copied file alone.
    assert.equal(await readFile(join(files, 'del', 'a.txt'), 'utf8'), content('a.txt'));
  });

  it('clear_succeeded removes only succeeded tasks; clear_done all finished ones; unfinished stay', async () => {
    await api.act(h.adminToken, 'copy', 'clear_done');
    const [ok] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/clr',
      names: ['a.txt'],
    });
    assert.equal((await api.settled(h.adminToken, 'copy', ok!.id)).state, 'succeeded');
    // The same copy again: the destination exists and overwrite is off, so it fails.
    const [bad] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/clr',
      names: ['a.txt'],
    });
    const failed = await api.settled(h.adminToken, 'copy', bad!.id);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error, /exists/);
    const upload = await api.upload(h.adminToken, '/local/clr-upload.txt', Buffer.from('u'));
    assert.equal((await api.settled(h.adminToken, 'upload', upload.id)).state, 'succeeded');

    await withoutWorkers(h, ['copy'], async () => {
      const [stopped, waiting] = await api.copy(h.adminToken, {
        src_dir: '/local/src',
        dst_dir: '/local/clr2',
        names: ['b.txt', 'c.txt'],
      });
      assert.deepEqual(await api.act(h.adminToken, 'copy', 'cancel', { tid: stopped!.id }), SUCCESS_NULL);

      assert.deepEqual(await api.act(h.adminToken, 'copy', 'clear_succeeded'), SUCCESS_NULL);
      assert.deepEqual(await api.info(h.adminToken, 'copy', ok!.id), NOT_FOUND, 'succeeded one cleared');
      assert.equal((await api.info(h.adminToken, 'copy', bad!.id)).data[0]?.state, 'failed', 'failed kept');
      assert.equal((await api.info(h.adminToken, 'copy', stopped!.id)).data[0]?.state, 'canceled');
      assert.equal((await api.info(h.adminToken, 'copy', waiting!.id)).data[0]?.state, 'pending');
      assert.equal((await api.info(h.adminToken, 'upload', upload.id)).code, 200, 'other types untouched');

      assert.deepEqual(await api.act(h.adminToken, 'copy', 'clear_done'), SUCCESS_NULL);
      assert.deepEqual(await api.info(h.adminToken, 'copy', bad!.id), NOT_FOUND, 'failed one cleared');
      assert.deepEqual(await api.info(h.adminToken, 'copy', stopped!.id), NOT_FOUND, 'canceled one cleared');
      assert.equal(
        (await api.info(h.adminToken, 'copy', waiting!.id)).data[0]?.state,
        'pending',
        'undone stays',
      );
      assert.deepEqual(await api.list(h.adminToken, 'copy', 'done'), []);
      assert.equal((await api.info(h.adminToken, 'upload', upload.id)).code, 200, 'other types untouched');
      await api.act(h.adminToken, 'copy', 'delete', { tid: waiting!.id });
    });
  });

  it('retries a failed copy: it is queued again, runs again and succeeds once the cause is gone', async () => {
    // Fails because the destination exists (no overwrite).
    await put('retry1/a.txt', 'in the way');
    const [t] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/retry1',
      names: ['a.txt'],
    });
    const failed = await api.settled(h.adminToken, 'copy', t!.id);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error, /exists/);
    assert.ok(failed.progress < 100);
    await rm(join(files, 'retry1', 'a.txt'));
    assert.deepEqual(await api.act(h.adminToken, 'copy', 'retry', { tid: t!.id }), SUCCESS_NULL);
    const again = await api.settled(h.adminToken, 'copy', t!.id);
    assert.equal(again.state, 'succeeded', again.error);
    assert.equal(again.id, t!.id, 'the same task ran again');
    assert.equal(again.error, '', 'the old error is gone');
    assert.equal(again.progress, 100);
    assert.equal(await readFile(join(files, 'retry1', 'a.txt'), 'utf8'), content('a.txt'));

    // Fails because its source was deleted after the task was created.
    await put('src/gone.txt', 'soon gone');
    let id = '';
    await withoutWorkers(h, ['copy'], async () => {
      const [g] = await api.copy(h.adminToken, {
        src_dir: '/local/src',
        dst_dir: '/local/retry2',
        names: ['gone.txt'],
      });
      id = g!.id;
      await rm(join(files, 'src', 'gone.txt'));
    });
    const gone = await api.settled(h.adminToken, 'copy', id);
    assert.equal(gone.state, 'failed');
    assert.match(gone.error, /not found/);
    await put('src/gone.txt', 'back again');
    assert.deepEqual(await api.act(h.adminToken, 'copy', 'retry', { tid: id }), SUCCESS_NULL);
    assert.equal((await api.settled(h.adminToken, 'copy', id)).state, 'succeeded');
    assert.equal(await readFile(join(files, 'retry2', 'gone.txt'), 'utf8'), 'back again');

    // A succeeded task cannot be retried.
    const refused = await api.act(h.adminToken, 'copy', 'retry', { tid: id });
    assert.equal(refused.code, 400);
    assert.match(refused.message, /only failed or canceled/);
  });

  it('retry_failed requeues every failed task of its type, and only of its type', async () => {
    for (const d of ['rf1', 'rf2', 'rf3']) await put(`${d}/a.txt`, 'in the way');
    await put('mv/a.txt', 'moving');
    await put('rf-move/a.txt', 'in the way');
    const [c1] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/rf1',
      names: ['a.txt'],
    });
    const [c2] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/rf2',
      names: ['a.txt'],
    });
    const [m] = await api.copy(
      h.adminToken,
      { src_dir: '/local/mv', dst_dir: '/local/rf-move', names: ['a.txt'] },
      '/api/fs/move',
    );
    assert.equal(m!.name, 'move [/local](/mv/a.txt) to [/local](/rf-move)');
    for (const [type, t] of [
      ['copy', c1],
      ['copy', c2],
      ['move', m],
    ] as const) {
      const f = await api.settled(h.adminToken, type, t!.id);
      assert.equal(f.state, 'failed', `${type} ${f.error}`);
    }
    for (const d of ['rf1', 'rf2', 'rf-move']) await rm(join(files, d, 'a.txt'));

    assert.deepEqual(await api.act(h.adminToken, 'copy', 'retry_failed'), SUCCESS_NULL);
    assert.equal((await api.settled(h.adminToken, 'copy', c1!.id)).state, 'succeeded');
    assert.equal((await api.settled(h.adminToken, 'copy', c2!.id)).state, 'succeeded');
    assert.equal(
      (await api.info(h.adminToken, 'move', m!.id)).data[0]?.state,
      'failed',
      'a move is not a copy',
    );
    assert.deepEqual(await api.list(h.adminToken, 'copy', 'done', 'state=failed'), []);

    assert.deepEqual(await api.act(h.adminToken, 'move', 'retry_failed'), SUCCESS_NULL);
    assert.equal((await api.settled(h.adminToken, 'move', m!.id)).state, 'succeeded');
    assert.equal(await readFile(join(files, 'rf-move', 'a.txt'), 'utf8'), 'moving');
  });

  it('refuses to cancel a finished task with a clear message and leaves it as it was', async () => {
    const [t] = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/cf',
      names: ['d.txt'],
    });
    assert.equal((await api.settled(h.adminToken, 'copy', t!.id)).state, 'succeeded');
    const res = await api.act(h.adminToken, 'copy', 'cancel', { tid: t!.id });
    assert.notEqual(res.code, 200);
    assert.ok(res.code >= 400 && res.code < 500, `code ${res.code}`);
    assert.match(res.message, /already finished/);
    assert.equal(res.data, null);
    assert.equal((await api.info(h.adminToken, 'copy', t!.id)).data[0]?.state, 'succeeded');
    // In bulk, the same refusal is reported for that id.
    const some = await api.act(h.adminToken, 'copy', 'cancel_some', { body: [t!.id] });
    assert.equal(some.code, 200);
    assert.match((some.data as Record<string, string>)[t!.id] ?? '', /already finished/);
  });

  it('*_some act on the real ids and report only the unknown ones', async () => {
    let p1 = '';
    let p2 = '';
    let p3 = '';
    await withoutWorkers(h, ['copy'], async () => {
      const tasks = await api.copy(h.adminToken, {
        src_dir: '/local/src',
        dst_dir: '/local/some',
        names: ['a.txt', 'b.txt', 'c.txt'],
      });
      [p1, p2, p3] = tasks.map((t) => t.id) as [string, string, string];

      const cancel = await api.act(h.adminToken, 'copy', 'cancel_some', { body: [p1, 'unknown-1', p2] });
      assert.deepEqual(cancel, { code: 200, message: 'success', data: { 'unknown-1': 'task not found' } });
      assert.equal((await api.info(h.adminToken, 'copy', p1)).data[0]?.state, 'canceled');
      assert.equal((await api.info(h.adminToken, 'copy', p2)).data[0]?.state, 'canceled');
      assert.equal((await api.info(h.adminToken, 'copy', p3)).data[0]?.state, 'pending', 'not in the list');

      const retry = await api.act(h.adminToken, 'copy', 'retry_some', { body: ['unknown-2', p1] });
      assert.deepEqual(retry, { code: 200, message: 'success', data: { 'unknown-2': 'task not found' } });
      assert.equal((await api.info(h.adminToken, 'copy', p1)).data[0]?.state, 'before_retry');
      assert.equal((await api.info(h.adminToken, 'copy', p2)).data[0]?.state, 'canceled');

      const del = await api.act(h.adminToken, 'copy', 'delete_some', {
        body: [p2, 'unknown-3', p3, 'unknown-4'],
      });
      assert.deepEqual(del, {
        code: 200,
        message: 'success',
        data: { 'unknown-3': 'task not found', 'unknown-4': 'task not found' },
      });
      assert.deepEqual(await api.info(h.adminToken, 'copy', p2), NOT_FOUND);
      assert.deepEqual(
        await api.info(h.adminToken, 'copy', p3),
        NOT_FOUND,
        'an unfinished task is deleted too',
      );

      // All ids real: an empty map. An empty list: an empty map.
      const none = await api.act(h.adminToken, 'copy', 'cancel_some', { body: [p1] });
      assert.deepEqual(none, { code: 200, message: 'success', data: {} });
      assert.deepEqual(await api.act(h.adminToken, 'copy', 'retry_some', { body: [] }), {
        code: 200,
        message: 'success',
        data: {},
      });
      await api.act(h.adminToken, 'copy', 'retry', { tid: p1 });
    });
    // The retried one runs once workers are back.
    assert.equal((await api.settled(h.adminToken, 'copy', p1)).state, 'succeeded');
    assert.equal(await readFile(join(files, 'some', 'a.txt'), 'utf8'), content('a.txt'));
    assert.ok(!(await readFile(join(files, 'some', 'b.txt')).catch(() => null)), 'deleted task never ran');
  });
});

describe('task API: done/undone paging', () => {
  let h: Harness;
  let api: ReturnType<typeof taskApi>;
  /** ids of finished offline_download tasks, newest first. */
  let doneIds: string[] = [];
  let undoneIds: string[] = [];
  const TOTAL = 1500;
  const CANCELED = 1200;

  const page = async (type: string, which: 'done' | 'undone', query: string) => {
    const res = await h.call('GET', `/api/task/${type}/${which}?${query}`, { token: h.adminToken });
    const env = envelopeOf<SeedTask[]>(res, query);
    assert.equal(env.code, 200, `${query}: ${env.message}`);
    const next = res.headers['x-next-cursor'];
    return {
      ids: env.data.map((t) => t.id),
      tasks: env.data,
      next: typeof next === 'string' ? next : undefined,
    };
  };

  before(async () => {
    // No worker runs offline downloads here: they stay pending until canceled.
    h = await startHarness({ tasks: { workers: { offline_download: 0 } } });
    api = taskApi(h);
    await mkdir(join(h.dataDir, 'files', 'src'), { recursive: true });
    await writeFile(join(h.dataDir, 'files', 'src', 'ok.txt'), 'ok');
    const admin = await principalOf(h, h.adminToken);
    const created = await h.core.tasks.create(
      admin,
      Array.from({ length: TOTAL }, (_, i) => fakeSpec('offline_download', i)),
    );
    const toCancel = created.slice(0, CANCELED).map((t) => t.id);
    for (let i = 0; i < toCancel.length; i += 1000) {
      assert.deepEqual(await h.core.tasks.cancelSome(admin, toCancel.slice(i, i + 1000)), {});
    }
    doneIds = toCancel.reverse();
    undoneIds = created
      .slice(CANCELED)
      .map((t) => t.id)
      .reverse();
  });
  after(() => h.close());

  it('returns the whole list without paging parameters, each task once, newest first', async () => {
    const done = await api.list(h.adminToken, 'offline_download', 'done');
    assert.equal(done.length, CANCELED);
    assert.equal(new Set(done.map((t) => t.id)).size, CANCELED, 'no task twice');
    assert.deepEqual(
      done.map((t) => t.id),
      doneIds,
    );
    assert.ok(done.every((t) => t.state === 'canceled'));
    const undone = await api.list(h.adminToken, 'offline_download', 'undone');
    assert.deepEqual(
      undone.map((t) => t.id),
      undoneIds,
    );
    assert.ok(undone.every((t) => t.state === 'pending'));
    assert.deepEqual(await api.list(h.adminToken, 'upload', 'done'), [], 'other types are separate');
  });

  it('pages with page/per_page', async () => {
    assert.deepEqual((await page('offline_download', 'done', 'per_page=2&page=2')).ids, doneIds.slice(2, 4));
    assert.deepEqual((await page('offline_download', 'done', 'per_page=2&page=1')).ids, doneIds.slice(0, 2));
    assert.deepEqual(
      (await page('offline_download', 'done', 'per_page=2&page=600')).ids,
      doneIds.slice(1198),
    );
    assert.deepEqual((await page('offline_download', 'done', 'per_page=2&page=601')).ids, []);
    assert.deepEqual(
      (await page('offline_download', 'done', 'per_page=7&page=3')).ids,
      doneIds.slice(14, 21),
    );
    assert.deepEqual(
      (await page('offline_download', 'undone', 'per_page=100&page=3')).ids,
      undoneIds.slice(200),
    );
  });

  it('pages with limit and the X-Next-Cursor header without ever repeating a task', async () => {
    const first = await page('offline_download', 'done', 'limit=2');
    assert.deepEqual(first.ids, doneIds.slice(0, 2));
    assert.ok(first.next, 'a cursor for the next page');
    const second = await page(
      'offline_download',
      'done',
      `limit=2&cursor=${encodeURIComponent(first.next!)}`,
    );
    assert.deepEqual(second.ids, doneIds.slice(2, 4));
    assert.ok(!second.ids.some((id) => first.ids.includes(id)));

    for (const limit of [1000, 7]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const p = await page(
          'offline_download',
          'done',
          `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        );
        assert.ok(p.ids.length <= limit);
        seen.push(...p.ids);
        cursor = p.next;
        pages++;
        assert.ok(pages < 1000, 'the walk ends');
      } while (cursor);
      assert.equal(new Set(seen).size, seen.length, `limit=${limit}: no task twice`);
      assert.deepEqual(seen, doneIds, `limit=${limit}: every task, in order`);
    }
  });

  it('keeps a cursor walk free of repeats while new tasks arrive', async () => {
    const admin = await principalOf(h, h.adminToken);
    const seen: string[] = [];
    let cursor: string | undefined;
    let added: string[] = [];
    do {
      const p = await page(
        'offline_download',
        'done',
        `limit=250${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      seen.push(...p.ids);
      cursor = p.next;
      if (added.length === 0) {
        const extra = await h.core.tasks.create(
          admin,
          Array.from({ length: 30 }, (_, i) => fakeSpec('offline_download', 10_000 + i)),
        );
        added = extra.map((t) => t.id);
        await h.core.tasks.cancelSome(admin, added);
      }
    } while (cursor);
    assert.equal(new Set(seen).size, seen.length, 'no task twice');
    for (const id of doneIds) assert.ok(seen.includes(id), 'every task that was there from the start');
    await h.core.tasks.deleteSome(admin, added);
  });

  it('filters by state', async () => {
    // Three copies that fail (their sources are missing) and two that succeed.
    const admin = await principalOf(h, h.adminToken);
    const failing = await h.core.tasks.create(
      admin,
      [1, 2, 3].map((n) => ({
        kind: 'copy' as const,
        name: `copy [/local](/missing-${n}) to [/local](/out)`,
        payload: { src: `/local/missing-${n}`, dstDir: '/local/out' },
      })),
    );
    const ok = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/o1',
      names: ['ok.txt'],
    });
    const ok2 = await api.copy(h.adminToken, {
      src_dir: '/local/src',
      dst_dir: '/local/o2',
      names: ['ok.txt'],
    });
    for (const t of [...failing, ...ok, ...ok2]) await api.settled(h.adminToken, 'copy', t.id);

    const failed = await api.list(h.adminToken, 'copy', 'done', 'state=failed');
    assert.deepEqual(failed.map((t) => t.id).sort(), failing.map((t) => t.id).sort());
    assert.ok(failed.every((t) => t.state === 'failed' && /not found/.test(t.error)));
    const succeeded = await api.list(h.adminToken, 'copy', 'done', 'state=succeeded');
    assert.deepEqual(succeeded.map((t) => t.id).sort(), [...ok, ...ok2].map((t) => t.id).sort());
    assert.equal((await api.list(h.adminToken, 'copy', 'done', 'state=failed,succeeded')).length, 5);
    assert.deepEqual(await api.list(h.adminToken, 'copy', 'done', 'state=canceled'), []);
    assert.equal((await api.list(h.adminToken, 'copy', 'done', 'state=failed&per_page=2&page=1')).length, 2);
    assert.equal(
      (await api.list(h.adminToken, 'offline_download', 'done', 'state=canceled&per_page=1000')).length,
      1000,
    );
    assert.equal((await api.list(h.adminToken, 'offline_download', 'undone', 'state=pending')).length, 300);
  });

  it('answers bad paging parameters with code 400, never a 500', async () => {
    for (const query of [
      'per_page=0',
      'per_page=-1',
      'per_page=abc',
      'per_page=1.5',
      'per_page=100000000',
      'page=0',
      'page=-3',
      'page=x',
      'limit=0',
      'cursor=abc',
      'cursor=-5',
      'state=bogus',
      'state=failed,bogus',
    ]) {
      const res = await h.call('GET', `/api/task/offline_download/done?${query}`, { token: h.adminToken });
      const env = envelopeOf(res, query);
      assert.equal(env.code, 400, `${query}: ${env.code} ${env.message}`);
      assert.ok(env.message.length > 0);
      assert.equal(env.data, null);
    }
  });
});

/** A Server-Sent Events stream being read in the background. */
interface EventStream {
  text(): string;
  events(): { event: string; data: string }[];
  until(check: (text: string) => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): void;
}

async function openEvents(
  url: string,
  token: string,
): Promise<{ status: number; type: string; stream: EventStream }> {
  const res = await request(url, { headers: { authorization: token } });
  let text = '';
  let ended = false;
  const pump = (async () => {
    try {
      for await (const chunk of res.body) text += (chunk as Buffer).toString('utf8');
    } catch {
      // closed by us
    } finally {
      ended = true;
    }
  })();
  const stream: EventStream = {
    text: () => text,
    events: () =>
      text
        .split('\n\n')
        .map((block) => {
          const lines = block.split('\n').filter((l) => l !== '' && !l.startsWith(':'));
          const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? '';
          const data = lines
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          return { event, data };
        })
        .filter((e) => e.event !== '' || e.data !== ''),
    async until(check, what, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!check(text)) {
        if (ended) throw new Error(`stream ended before ${what}: ${text}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${text}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close() {
      res.body.destroy();
      void pump;
    },
  };
  return { status: res.statusCode, type: String(res.headers['content-type']), stream };
}

describe('task API: live events (SSE)', () => {
  let h: Harness;
  let api: ReturnType<typeof taskApi>;
  let base = '';
  const streams: EventStream[] = [];

  before(async () => {
    h = await startHarness();
    api = taskApi(h);
    await mkdir(join(h.dataDir, 'files', 'src'), { recursive: true });
    await writeFile(join(h.dataDir, 'files', 'src', 'e.txt'), 'event me');
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    for (const s of streams) s.close();
    await h.close();
  });

  it('streams `event: task` lines for a copy started after connecting, ending in succeeded; never another user’s', async () => {
    const alice = await h.user('alice');
    const bob = await h.user('bob');
    const asAlice = await openEvents(`${base}/api/task/events`, alice);
    const asAdmin = await openEvents(`${base}/api/task/events`, h.adminToken);
    streams.push(asAlice.stream, asAdmin.stream);
    assert.equal(asAlice.status, 200);
    assert.match(asAlice.type, /^text\/event-stream/);
    await asAlice.stream.until((t) => t.startsWith(': connected'), 'the stream to open');
    await asAdmin.stream.until((t) => t.startsWith(': connected'), 'the admin stream to open');

    // Bob's copy runs to the end before Alice's starts: every event of it has been sent by then.
    const [bobs] = await api.copy(bob, { src_dir: '/local/src', dst_dir: '/local/bob', names: ['e.txt'] });
    assert.equal((await api.settled(bob, 'copy', bobs!.id)).state, 'succeeded');
    const [alices] = await api.copy(alice, {
      src_dir: '/local/src',
      dst_dir: '/local/alice',
      names: ['e.txt'],
    });

    const mineIn = (s: EventStream, id: string) =>
      s
        .events()
        .filter((e) => e.event === 'task')
        .map((e) => JSON.parse(e.data) as SeedTask)
        .filter((t) => t.id === id);
    await asAlice.stream.until(
      () => mineIn(asAlice.stream, alices!.id).some((t) => t.state === 'succeeded'),
      'alice’s task to succeed',
    );
    assert.match(asAlice.stream.text(), /event: task\ndata: \{/);
    const events = mineIn(asAlice.stream, alices!.id);
    for (const t of events) assertSeedTask(t, 'event');
    const last = events[events.length - 1]!;
    assert.equal(last.state, 'succeeded', 'the last event is the finished task');
    assert.equal(last.progress, 100);
    assert.equal(last.total_bytes, 'event me'.length);
    assert.equal(last.name, 'copy [/local](/src/e.txt) to [/local](/alice)');
    assert.equal(events.filter((t) => t.state === 'succeeded').length, 1, 'succeeded once, nothing after');
    assert.ok(!asAlice.stream.text().includes(bobs!.id), 'bob’s task never reaches alice');
    assert.ok(!asAlice.stream.text().includes('"creator":"bob"'));

    // An admin sees everyone's.
    await asAdmin.stream.until(
      (t) => t.includes(alices!.id) && t.includes(bobs!.id),
      'both tasks for the admin',
    );

    // Deleting the task tells its owner.
    assert.deepEqual(await api.act(alice, 'copy', 'delete', { tid: alices!.id }), SUCCESS_NULL);
    await asAlice.stream.until(
      () => asAlice.stream.events().some((e) => e.event === 'removed' && e.data.includes(alices!.id)),
      'the removed event',
    );
    assert.deepEqual(await api.act(bob, 'copy', 'delete', { tid: bobs!.id }), SUCCESS_NULL);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!asAlice.stream.text().includes(bobs!.id), 'nor its removal');
  });

  it('refuses a guest and a caller without a token in the AList envelope', async () => {
    const guest = await h.user('visitor', { role: 1 });
    const asGuest = await request(`${base}/api/task/events`, { headers: { authorization: guest } });
    assert.deepEqual(await asGuest.body.json(), { code: 403, message: 'You are a guest', data: null });
    const anonymous = await request(`${base}/api/task/events`);
    const env = (await anonymous.body.json()) as Envelope;
    assert.equal(env.code, 401);
  });
});
