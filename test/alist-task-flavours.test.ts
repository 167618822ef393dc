import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { type EveryTask, makeEveryTask, startFileServer, type TaskReply } from './helpers/every-task.ts';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { mountWebDav, type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';

/**
 * Every AList reply that carries a task (fs/put as a task, fs/copy, fs/move, fs/remove, offline
 * download, decompress, task info, done and undone, the event stream), read in both flavours:
 * the seed's at the root by default, today's AList under /@openlist and at the root with
 * FERRY_ALIST_COMPAT=current. Today's AList form must match OpenList's `TaskInfo`
 * (`server/handles/task.go`) field by field and type by type, with AList's status texts; the
 * seed's form must be what it always was. Then the task names against the OpenList UI's patterns.
 */

/** The seed's ten states, in tache's order (OpenList-Frontend `TaskStateEnum`). */
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

/** AList's status texts for the kinds ferry runs (OpenList `internal/fs`, `internal/offline_download`). */
const ALIST_STATUS = new Set([
  '',
  'uploading',
  'getting src object',
  'walking and decompressing',
  'offline download completed, maybe transferring',
  '[aria2]: aria2: active',
]);

/** What a finished task of each type says in `status` under today's AList. */
const FINISHED_STATUS: Record<string, string> = {
  upload: 'uploading',
  copy: 'uploading',
  move: 'uploading',
  offline_download: '',
  offline_download_transfer: 'getting src object',
  decompress: 'walking and decompressing',
  decompress_upload: 'uploading',
};

/**
 * The OpenList UI's task name patterns, copied from the built UI ferry serves
 * (`@openlist-frontend/openlist-frontend@4.2.6`, `dist/assets/Copy-*.js`, `Move-*.js`,
 * `Upload-*.js` and `helper-*.js`), by the task type whose page uses each.
 */
const UI_NAME_PATTERNS: Record<string, RegExp> = {
  copy: /^(?:copy|merge) \[(.*\/([^/]*))]\((.*\/([^/]*))\) to \[(.+)]\((.+)\)$/,
  move: /^move \[(.*\/([^/]*))]\((.*\/([^/]*))\) to \[(.+)]\((.+)\)$/,
  upload: /^upload (.+) to \[(.+)]\((.+)\)$/,
  offline_download: /^download (.+) to \((.+)\)$/,
  offline_download_transfer: /^(transfer|upload) \[(.*)]\((.*\/([^/]+))\) to \[(.+)]\((.+)\)$/,
  decompress: /^decompress \[(.+)]\((.*\/([^/]+))\)\[(.+)] to \[(.+)]\((.+)\) with password <(.*)>$/,
  decompress_upload: /^upload (.+) to \[(.+)]\((.+)\)$/,
};

const isInt = (v: unknown) => Number.isInteger(v);
const isTime = (v: unknown) => v === null || (typeof v === 'string' && !Number.isNaN(Date.parse(v)));

/** OpenList's TaskInfo, type by type, plus what ferry adds. */
function assertCurrent(t: TaskReply, where: string): void {
  for (const key of ['id', 'name', 'creator', 'status', 'error'])
    assert.equal(typeof t[key], 'string', `${where}: ${key}`);
  assert.ok(isInt(t.creator_role), `${where}: creator_role`);
  assert.ok(
    isInt(t.state) && (t.state as number) >= 0 && (t.state as number) <= 9,
    `${where}: state ${t.state}`,
  );
  assert.ok(typeof t.progress === 'number' && Number.isFinite(t.progress), `${where}: progress`);
  assert.ok(isTime(t.start_time) && isTime(t.end_time), `${where}: times`);
  assert.ok(isInt(t.total_bytes), `${where}: total_bytes`);
  if (t.type !== 'delete') assert.ok(ALIST_STATUS.has(t.status as string), `${where}: status "${t.status}"`);
  assert.equal(typeof t.detail, 'string', `${where}: ferry's status line is kept as detail`);
}

/** The seed's task, as it always was. */
function assertSeed(t: TaskReply, where: string): void {
  for (const key of ['id', 'name', 'creator', 'status', 'error'])
    assert.equal(typeof t[key], 'string', `${where}: ${key}`);
  assert.ok(STATES.includes(t.state as string), `${where}: state ${String(t.state)}`);
  assert.ok(isInt(t.creator_role) && isInt(t.total_bytes) && typeof t.progress === 'number', where);
  assert.ok(isTime(t.start_time) && isTime(t.end_time), `${where}: times`);
  assert.equal(t.detail, undefined, `${where}: no detail field`);
}

describe('AList task replies in both flavours', () => {
  let seedRoot: Harness;
  let currentRoot: Harness;
  let files: Awaited<ReturnType<typeof startFileServer>>;
  let dav: RcloneServer | undefined;
  const made = new Map<string, EveryTask>();

  const mountDav = async (h: Harness) => {
    if (dav) await mountWebDav(h, dav);
  };

  before(async () => {
    files = await startFileServer();
    if (rcloneAvailable()) dav = await startRclone('webdav');
    seedRoot = await startHarness();
    currentRoot = await startHarness({ alistCompat: 'current' });
    await mountDav(seedRoot);
    await mountDav(currentRoot);
    const davMount = dav ? '/dav' : undefined;
    const opts = (tag: string) => ({ tag, fileServer: files.base, ...(davMount && { davMount }) });
    made.set('seed', await makeEveryTask(seedRoot, '', opts('seed')));
    made.set('openlist', await makeEveryTask(seedRoot, '/@openlist', opts('openlist')));
    made.set('current', await makeEveryTask(currentRoot, '', opts('current')));
  });
  after(async () => {
    await seedRoot?.close();
    await currentRoot?.close();
    await files?.close();
    if (dav) {
      await dav.close();
      await rm(join(dav.root), { recursive: true, force: true });
    }
  });

  for (const [view, where] of [
    ['openlist', 'under /@openlist'],
    ['current', 'at the root with FERRY_ALIST_COMPAT=current'],
  ] as const) {
    it(`answers every task as OpenList's TaskInfo ${where}`, () => {
      const every = made.get(view);
      assert.ok(every);
      const types = Object.keys(every.ids).sort();
      const expected = Object.keys(FINISHED_STATUS).concat('delete');
      if (!dav) expected.splice(expected.indexOf('decompress_upload'), 1);
      assert.deepEqual(types, expected.sort());
      let checked = 0;
      for (const { label, tasks } of every.replies) {
        for (const t of tasks) {
          assertCurrent(t, `${label} ${t.id}`);
          checked++;
        }
      }
      assert.ok(checked > 40, `${checked} tasks checked`);
      // The finished tasks, read back by info: state succeeded (2), AList's text for the kind.
      for (const { label, tasks } of every.replies.filter((r) => r.label.endsWith('/info'))) {
        const [t] = tasks;
        assert.ok(t);
        assert.equal(t.state, 2, `${label}: ${t.error}`);
        if (t.type !== 'delete') assert.equal(t.status, FINISHED_STATUS[t.type as string], label);
      }
    });
  }

  it('answers as the seed at the root by default: string states, ferry status lines, info as an array', async () => {
    const every = made.get('seed');
    assert.ok(every);
    for (const { label, tasks } of every.replies) for (const t of tasks) assertSeed(t, `${label} ${t.id}`);
    const [copyId] = every.ids.copy ?? [];
    const info = await seedRoot.json<TaskReply[]>('POST', `/api/task/copy/info?tid=${copyId}`, {
      token: seedRoot.adminToken,
    });
    assert.ok(Array.isArray(info.data) && info.data.length === 1);
    assert.equal(info.data[0]?.state, 'succeeded');
    assert.equal(info.data[0]?.status, 'up.txt', "the seed's status is ferry's own line");
    // The same task through /@openlist: today's AList answers the task itself, not an array.
    const current = await seedRoot.json<TaskReply>('POST', `/@openlist/api/task/copy/info?tid=${copyId}`, {
      token: seedRoot.adminToken,
    });
    assert.ok(!Array.isArray(current.data));
    assert.equal(current.data.state, 2);
    assert.equal(current.data.detail, 'up.txt');
  });

  it('gives failed and canceled tasks the numbers the UI shows Retry for (7 and 4), pending 0', async () => {
    const h = seedRoot;
    await h.call('PUT', '/api/fs/put', {
      token: h.adminToken,
      body: Buffer.from('x'),
      headers: { 'file-path': encodeURIComponent('/local/retry/a.txt') },
    });
    h.core.runner.setLimit('copy', 0);
    const queue = async () => {
      const res = await h.json<{ tasks: TaskReply[] }>('POST', '/@openlist/api/fs/copy', {
        token: h.adminToken,
        body: { src_dir: '/local/retry', dst_dir: '/local/retry/out', names: ['a.txt'] },
      });
      assert.equal(res.code, 200, res.message);
      return res.data.tasks[0] as TaskReply;
    };
    const toCancel = await queue();
    const toFail = await queue();
    assert.equal(toCancel.state, 0);
    assert.equal(toCancel.status, '');
    const undone = await h.json<TaskReply[]>('GET', '/@openlist/api/task/copy/undone', {
      token: h.adminToken,
    });
    assert.ok(undone.data.some((t) => t.id === toFail.id && t.state === 0));
    await h.json('POST', `/@openlist/api/task/copy/cancel?tid=${toCancel.id}`, { token: h.adminToken });
    await rm(join(h.dataDir, 'files', 'retry', 'a.txt'));
    h.core.runner.setLimit('copy', 8);
    const failed = await h.finished('copy', toFail.id);
    assert.equal(failed.state, 'failed');
    const done = await h.json<TaskReply[]>('GET', '/@openlist/api/task/copy/done', { token: h.adminToken });
    const state = (id: string) => done.data.find((t) => t.id === id)?.state;
    assert.equal(state(toCancel.id), 4);
    assert.equal(state(toFail.id), 7);
    const cancelled = done.data.find((t) => t.id === toCancel.id);
    assert.equal(cancelled?.status, '', 'never ran');
    const failure = done.data.find((t) => t.id === toFail.id);
    assert.equal(failure?.status, 'getting src object', 'failed before moving a byte');
    // A state filter takes tache's numbers as well as names.
    const onlyFailed = await h.json<TaskReply[]>('GET', '/@openlist/api/task/copy/done?state=7', {
      token: h.adminToken,
    });
    assert.deepEqual(
      onlyFailed.data.map((t) => t.id),
      [toFail.id],
    );
    const byName = await h.json<TaskReply[]>('GET', '/api/task/copy/done?state=failed', {
      token: h.adminToken,
    });
    assert.deepEqual(
      byName.data.map((t) => [t.id, t.state]),
      [[toFail.id, 'failed']],
    );
    const bogus = await h.json('GET', '/@openlist/api/task/copy/done?state=12', { token: h.adminToken });
    assert.equal(bogus.code, 400);
  });

  it('streams task events in the root flavour', async () => {
    const h = currentRoot;
    const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const res = await request(`${address}/api/task/events?type=upload`, {
      headers: { authorization: h.adminToken },
    });
    let text = '';
    const reading = (async () => {
      for await (const chunk of res.body) text += (chunk as Buffer).toString('utf8');
    })().catch(() => undefined);
    await h.call('PUT', '/api/fs/put', {
      token: h.adminToken,
      body: Buffer.from('evented'),
      headers: { 'file-path': encodeURIComponent('/local/events/e.txt') },
    });
    await waitFor(async () => (text.includes('"state":2') ? true : undefined), 10_000, 'a succeeded event');
    res.body.destroy();
    await reading;
    const events = text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as TaskReply);
    assert.ok(events.length > 0);
    for (const t of events) assertCurrent(t, 'event');
  });

  it('streams task events under /@openlist too, there in the current flavour, at the root in the seed one', async () => {
    const h = seedRoot;
    const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const open = async (prefix: string) => {
      const res = await request(`${address}${prefix}/api/task/events?type=upload`, {
        headers: { authorization: h.adminToken },
      });
      assert.equal(res.statusCode, 200, prefix);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/, prefix);
      const stream = { text: '', res, reading: Promise.resolve() };
      stream.reading = (async () => {
        for await (const chunk of res.body) stream.text += (chunk as Buffer).toString('utf8');
      })().catch(() => undefined);
      return stream;
    };
    const current = await open('/@openlist');
    const seed = await open('');
    await h.call('PUT', '/api/fs/put', {
      token: h.adminToken,
      body: Buffer.from('evented twice'),
      headers: { 'file-path': encodeURIComponent('/local/events/both.txt') },
    });
    await waitFor(
      async () => (current.text.includes('"state":2') ? true : undefined),
      10_000,
      'a current event',
    );
    await waitFor(
      async () => (seed.text.includes('"state":"succeeded"') ? true : undefined),
      10_000,
      'a seed event',
    );
    const parsed = (text: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)) as TaskReply);
    for (const stream of [current, seed]) {
      stream.res.body.destroy();
      await stream.reading;
    }
    for (const t of parsed(current.text)) assertCurrent(t, '/@openlist event');
    for (const t of parsed(seed.text)) assertSeed(t, 'root event');
    // A guest is refused in the envelope under the prefix as at the root.
    const refused = await request(`${address}/@openlist/api/task/events`);
    assert.equal(((await refused.body.json()) as { code: number }).code, 401);
  });

  describe("task names against the OpenList UI's patterns", () => {
    it('every name of every type matches the pattern its UI page parses it with', () => {
      for (const view of ['openlist', 'current']) {
        const every = made.get(view);
        assert.ok(every);
        for (const { label, tasks } of every.replies) {
          for (const t of tasks) {
            const pattern = UI_NAME_PATTERNS[t.type as string];
            if (!pattern) continue; // delete: AList has no delete tasks, the UI no page for them
            assert.match(t.name, pattern, `${view} ${label}`);
          }
        }
      }
    });

    it("puts the URL where the UI links it, the password where it shows it, the seed's names at the root", () => {
      for (const view of ['seed', 'openlist', 'current']) {
        const every = made.get(view);
        assert.ok(every);
        const byId = new Map<string, TaskReply>();
        for (const { tasks } of every.replies) for (const t of tasks) byId.set(t.id, t);
        const [downloadId] = every.ids.offline_download ?? [];
        const download = byId.get(downloadId as string);
        assert.ok(download);
        const dir = `/local/${view}`;
        if (view === 'seed') {
          assert.equal(download.name, `download hello.bin to (${dir})`);
        } else {
          const m = UI_NAME_PATTERNS.offline_download?.exec(download.name);
          assert.equal(m?.[1], every.url, 'the UI links group 1 as the URL');
          assert.equal(m?.[2], dir);
        }
        for (const id of every.ids.decompress ?? []) {
          const t = byId.get(id);
          assert.ok(t);
          const m = UI_NAME_PATTERNS.decompress?.exec(t.name);
          assert.ok(m, t.name);
          assert.equal(m[7], every.passwords.get(id), 'the password between < and >');
          assert.equal(m[2], `/${view}/a.zip`);
          assert.equal(m[4], '/');
        }
        const [copyId] = every.ids.copy ?? [];
        assert.equal(
          byId.get(copyId as string)?.name,
          `copy [/local](/${view}/up.txt) to [/local](/${view}/copies)`,
        );
      }
    });
  });
});
