import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/**
 * `/api/job/*` on one node (Local mounts): the data-loss guards, who may see and run which job,
 * bad input in the AList envelope, and `every_seconds` runs (repeated, and skipped while the last
 * run is still going).
 */

interface JobView {
  id: string;
  name: string;
  mode: string;
  src_dir: string;
  dst_dir: string;
  schedule: { every_seconds?: number; cron?: string; timezone?: string } | null;
  enabled: boolean;
  next_run_at: string | null;
  owner_id: number;
}

interface RunRow {
  task_id: string | null;
  state: string;
  copied_files: number;
  deleted_files: number;
  error: string;
}

describe('jobs API', () => {
  let h: Harness;
  const files = () => join(h.dataDir, 'files');
  const put = async (rel: string, data = rel) => {
    const path = join(files(), rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
  };
  const create = (body: Record<string, unknown>, token = h.adminToken) =>
    h.json<JobView>('POST', '/api/job/create', { token, body });
  /** `POST /api/job/run`: the run's task (the reply as it came, for the cases that expect a refusal). */
  const runJob = (id: string, token = h.adminToken) =>
    h.json<{ task: { id: string; type: string; name: string } }>('POST', `/api/job/run?id=${id}`, { token });
  const runs = async (id: string, token = h.adminToken) =>
    (await h.json<RunRow[]>('GET', `/api/job/runs?id=${id}`, { token })).data;

  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  it('refuses a sync whose source is empty while its destination is not, and deletes nothing', async () => {
    await mkdir(join(files(), 'empty-src'), { recursive: true });
    await put('full-dst/precious.txt');
    const job = await create({
      name: 'trap',
      mode: 'sync',
      src_dir: '/local/empty-src',
      dst_dir: '/local/full-dst',
    });
    assert.equal(job.code, 200, job.message);
    const plan = await h.json('POST', `/api/job/plan?id=${job.data.id}`, { token: h.adminToken });
    assert.equal(plan.code, 409);
    assert.match(plan.message, /source is empty while the destination is not/);
    const run = await runJob(job.data.id);
    const task = await h.finished('sync', run.data.task.id);
    assert.equal(task.state, 'failed');
    assert.match(task.error, /source is empty/);
    assert.deepEqual(await readdir(join(files(), 'full-dst')), ['precious.txt']);
  });

  it('refuses a sync whose source cannot be listed', async () => {
    await put('dst-of-missing/keep.txt');
    const job = await create({
      name: 'gone',
      mode: 'sync',
      src_dir: '/local/no-such-src',
      dst_dir: '/local/dst-of-missing',
    });
    const run = await runJob(job.data.id);
    const task = await h.finished('sync', run.data.task.id);
    assert.equal(task.state, 'failed');
    assert.match(task.error, /source cannot be listed/);
    assert.deepEqual(await readdir(join(files(), 'dst-of-missing')), ['keep.txt']);
  });

  it('refuses a sync that would delete more than max_delete files, before copying anything', async () => {
    await put('md-src/new.txt');
    for (const n of [1, 2, 3]) await put(`md-dst/old-${n}.txt`);
    const job = await create({
      name: 'limit',
      mode: 'sync',
      src_dir: '/local/md-src',
      dst_dir: '/local/md-dst',
      max_delete: 2,
    });
    const plan = await h.json('POST', `/api/job/plan?id=${job.data.id}`, { token: h.adminToken });
    assert.equal(plan.code, 409);
    assert.match(plan.message, /would delete 3 files, more than max_delete \(2\)/);
    const run = await runJob(job.data.id);
    const task = await h.finished('sync', run.data.task.id);
    assert.equal(task.state, 'failed');
    assert.deepEqual((await readdir(join(files(), 'md-dst'))).sort(), [
      'old-1.txt',
      'old-2.txt',
      'old-3.txt',
    ]);
    // Raised to 3, the same sync runs.
    const raised = await h.json('POST', '/api/job/update', {
      token: h.adminToken,
      body: {
        id: job.data.id,
        name: 'limit',
        mode: 'sync',
        src_dir: '/local/md-src',
        dst_dir: '/local/md-dst',
        max_delete: 3,
      },
    });
    assert.equal(raised.code, 200, raised.message);
    const again = await runJob(job.data.id);
    assert.equal((await h.finished('sync', again.data.task.id)).state, 'succeeded');
    assert.deepEqual(await readdir(join(files(), 'md-dst')), ['new.txt']);
    const [newest] = await runs(job.data.id);
    assert.equal(newest?.deleted_files, 3);
  });

  it('include and exclude globs: only matching files are taken, the others are left alone on both sides', async () => {
    for (const rel of ['a.jpg', 'deep/b.jpg', 'deep/c.txt', 'raw/d.jpg', '.hidden.jpg'])
      await put(`glob-src/${rel}`);
    for (const rel of ['old.jpg', 'notes.txt', 'raw/old.jpg']) await put(`glob-dst/${rel}`);
    const job = await create({
      name: 'globs',
      mode: 'sync',
      src_dir: '/local/glob-src',
      dst_dir: '/local/glob-dst',
      include: ['*.jpg'],
      exclude: ['raw'],
    });
    const plan = await h.json<{ copy: string[]; delete: string[]; skip: number }>(
      'POST',
      `/api/job/plan?id=${job.data.id}`,
      { token: h.adminToken },
    );
    assert.deepEqual(
      { copy: [...plan.data.copy].sort(), delete: plan.data.delete },
      { copy: ['/.hidden.jpg', '/a.jpg', '/deep/b.jpg'], delete: ['/old.jpg'] },
    );
  });

  it('a sync replaces a folder where the source has a file, and a file where it has a folder', async () => {
    await put('swap-src/x', 'now a file');
    await put('swap-src/y/inner.txt', 'now in a folder');
    await put('swap-dst/x/old.txt', 'was in a folder');
    await put('swap-dst/x/deeper/old2.txt', 'was deeper');
    await put('swap-dst/y', 'was a file');
    const job = await create({
      name: 'swap',
      mode: 'sync',
      src_dir: '/local/swap-src',
      dst_dir: '/local/swap-dst',
    });
    const plan = await h.json<{ copy: string[]; delete: string[] }>(
      'POST',
      `/api/job/plan?id=${job.data.id}`,
      {
        token: h.adminToken,
      },
    );
    assert.deepEqual(
      { copy: [...plan.data.copy].sort(), delete: [...plan.data.delete].sort() },
      { copy: ['/x', '/y/inner.txt'], delete: ['/x/deeper/old2.txt', '/x/old.txt', '/y'] },
    );
    const run = await runJob(job.data.id);
    const task = await h.finished('sync', run.data.task.id);
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(await readFile(join(files(), 'swap-dst/x'), 'utf8'), 'now a file');
    assert.equal(await readFile(join(files(), 'swap-dst/y/inner.txt'), 'utf8'), 'now in a folder');
    const [row] = await runs(job.data.id);
    assert.deepEqual([row?.copied_files, row?.deleted_files], [2, 3]);
    const again = await h.json<{ copy: string[]; delete: string[] }>(
      'POST',
      `/api/job/plan?id=${job.data.id}`,
      {
        token: h.adminToken,
      },
    );
    assert.deepEqual([again.data.copy, again.data.delete], [[], []]);
  });

  it('never writes or deletes through a link at the destination', async () => {
    await put('outside/keep.txt', 'outside the destination');
    await put('ln-src/a.txt');
    await mkdir(join(files(), 'ln-dst'), { recursive: true });
    await symlink(join(files(), 'outside'), join(files(), 'ln-dst/gone-link'));
    const job = await create({
      name: 'links',
      mode: 'sync',
      src_dir: '/local/ln-src',
      dst_dir: '/local/ln-dst',
    });
    const plan = await h.json<{ delete: string[] }>('POST', `/api/job/plan?id=${job.data.id}`, {
      token: h.adminToken,
    });
    assert.deepEqual(plan.data.delete, ['/gone-link'], 'the link is one entry, not the files it leads to');
    const run = await runJob(job.data.id);
    assert.equal((await h.finished('sync', run.data.task.id)).state, 'succeeded');
    assert.equal(await readFile(join(files(), 'outside/keep.txt'), 'utf8'), 'outside the destination');
    await assert.rejects(lstat(join(files(), 'ln-dst/gone-link')), 'the link itself is gone');
    // A source folder of the link's name: nothing is copied through the link, the run fails.
    await put('ln-src/in-link/b.txt');
    await symlink(join(files(), 'outside'), join(files(), 'ln-dst/in-link'));
    const again = await runJob(job.data.id);
    const failed = await h.finished('sync', again.data.task.id);
    assert.equal(failed.state, 'failed');
    assert.deepEqual(await readdir(join(files(), 'outside')), ['keep.txt']);
  });

  it('a finished run sends job.run.finished (signed, with the job and its counts) and counts ferry_job_runs_total', async () => {
    const receiver = await startReceiver('job-secret');
    try {
      const hook = await h.json<{ id: number }>('POST', '/api/admin/webhook/create', {
        token: h.adminToken,
        body: { url: receiver.url, secret: 'job-secret', events: ['job.run.finished'] },
      });
      assert.equal(hook.code, 200, hook.message);
      await put('hook-src/a.txt', 'hello');
      const job = await create({
        name: 'hooked',
        mode: 'sync',
        src_dir: '/local/hook-src',
        dst_dir: '/local/hook-dst',
      });
      const run = await runJob(job.data.id);
      await h.finished('sync', run.data.task.id);
      const got = await waitFor(async () => receiver.received[0], 10_000, 'the job.run.finished delivery');
      assert.equal(got.headers['x-ferry-event'], 'job.run.finished');
      assert.ok(got.signatureValid);
      const body = got.json as unknown as {
        task: { id: string; state: string };
        job: Record<string, unknown>;
      };
      assert.equal(body.task.id, run.data.task.id);
      assert.equal(body.task.state, 'succeeded');
      assert.deepEqual(
        [body.job.id, body.job.name, body.job.mode, body.job.copied_files, body.job.bytes],
        [job.data.id, 'hooked', 'sync', 1, 5],
      );
      await h.json('POST', `/api/admin/webhook/delete?id=${hook.data.id}`, { token: h.adminToken });
    } finally {
      await receiver.close();
    }
    const metrics = await h.call('GET', '/metrics');
    assert.match(metrics.body, /^ferry_job_runs_total\{outcome="succeeded"\} [1-9]/m);
  });

  it('copy and move jobs run under the copy and move task types, with their names', async () => {
    await put('cm-src/a/one.txt', 'one');
    await put('cm-src/two.txt', 'two');
    const copy = await create({
      name: 'c',
      mode: 'copy',
      src_dir: '/local/cm-src',
      dst_dir: '/local/cm-copy',
    });
    const run = await runJob(copy.data.id);
    assert.equal(run.data.task.type, 'copy');
    assert.equal(run.data.task.name, 'copy [/local](/cm-src) to [/local](/cm-copy)');
    assert.equal((await h.finished('copy', run.data.task.id)).state, 'succeeded');
    assert.equal(await readFile(join(files(), 'cm-copy/a/one.txt'), 'utf8'), 'one');
    const move = await create({
      name: 'm',
      mode: 'move',
      src_dir: '/local/cm-src',
      dst_dir: '/local/cm-moved',
    });
    const moved = await runJob(move.data.id);
    assert.equal(moved.data.task.type, 'move');
    assert.equal((await h.finished('move', moved.data.task.id)).state, 'succeeded');
    assert.equal(await readFile(join(files(), 'cm-moved/two.txt'), 'utf8'), 'two');
    assert.deepEqual(await readdir(join(files(), 'cm-src/a')), [], 'the sources are gone');
    const sync = await create({
      name: 's',
      mode: 'sync',
      src_dir: '/local/cm-copy',
      dst_dir: '/local/cm-sync',
    });
    const synced = await runJob(sync.data.id);
    assert.equal(synced.data.task.type, 'sync');
    assert.equal(synced.data.task.name, 'sync [/local](/cm-copy) to [/local](/cm-sync)');
    const syncTask = await h.finished('sync', synced.data.task.id);
    assert.equal(syncTask.state, 'succeeded');
    const listed = await h.json<{ id: string }[]>('GET', '/api/task/sync/done', { token: h.adminToken });
    assert.ok(
      listed.data.some((t) => t.id === syncTask.id),
      'listed under /api/task/sync',
    );
    // KooDrive counts a sync run among its transfers (type 0).
    const koo = await h.call('GET', '/koodrive/ose/v1/task/list?taskType=0&pageSize=100', {
      headers: { authorization: `Bearer ${h.adminToken}` },
    });
    const kooTasks = (JSON.parse(koo.body) as { taskList: { taskId: string; taskType: number }[] }).taskList;
    assert.equal(kooTasks.find((t) => t.taskId === syncTask.id)?.taskType, 0);
  });

  it('a general user works below its base path, sees only its own jobs; guests are refused', async () => {
    await mkdir(join(files(), 'alice/src'), { recursive: true });
    await put('alice/src/a.txt');
    const alice = await h.user('alice', { base_path: '/local/alice' });
    const bob = await h.user('bob');
    const guest = await h.user('visitor', { role: 1 });
    const mine = await create({ name: 'mine', mode: 'sync', src_dir: '/src', dst_dir: '/dst' }, alice);
    assert.equal(mine.code, 200, mine.message);
    assert.equal(mine.data.src_dir, '/src');
    const climbing = await create({ name: 'x', mode: 'sync', src_dir: '/../bob', dst_dir: '/dst' }, alice);
    assert.equal(climbing.code, 403);
    const run = await runJob(mine.data.id, alice);
    assert.equal(run.code, 200, run.message);
    assert.equal((await h.finished('sync', run.data.task.id)).state, 'succeeded');
    assert.equal(await readFile(join(files(), 'alice/dst/a.txt'), 'utf8'), 'alice/src/a.txt');

    for (const [method, action] of [
      ['GET', 'get'],
      ['GET', 'runs'],
      ['POST', 'run'],
      ['POST', 'plan'],
      ['POST', 'pause'],
      ['POST', 'delete'],
    ] as const) {
      const res = await h.json(method, `/api/job/${action}?id=${mine.data.id}`, { token: bob });
      assert.deepEqual(res, { code: 404, message: 'job not found', data: null }, action);
      const asGuest = await h.json(method, `/api/job/${action}?id=${mine.data.id}`, { token: guest });
      assert.deepEqual(asGuest, { code: 403, message: 'You are a guest', data: null }, action);
    }
    assert.deepEqual((await h.json('GET', '/api/job/list', { token: guest })).code, 403);
    const bobs = await h.json<JobView[]>('GET', '/api/job/list', { token: bob });
    assert.deepEqual(bobs.data, []);
    const all = await h.json<JobView[]>('GET', '/api/job/list', { token: h.adminToken });
    const seen = all.data.find((j) => j.id === mine.data.id);
    assert.equal(seen?.src_dir, '/local/alice/src', 'an admin sees the virtual path');
    // Moved to another base path since, its owner may no longer run it: nobody can, not even an admin.
    const moved = await h.json('POST', '/api/admin/user/update', {
      token: h.adminToken,
      body: { id: seen?.owner_id, base_path: '/local/elsewhere' },
    });
    assert.equal(moved.code, 200, moved.message);
    const stale = await runJob(mine.data.id);
    assert.equal(stale.code, 403);
    assert.match(stale.message, /outside its owner's base path/);
    const noRemove = await h.user('carol', { permission: 0x08 | 0x40 });
    const refused = await create(
      { name: 'x', mode: 'sync', src_dir: '/local/a', dst_dir: '/local/b' },
      noRemove,
    );
    assert.equal(refused.code, 403);
  });

  it('compare: hash finds a same-size change that size and time miss', async () => {
    await put('hash-src/a.txt', 'AAAA');
    await put('hash-dst/a.txt', 'BBBB'); // same size, newer than the source
    const body = { mode: 'sync', src_dir: '/local/hash-src', dst_dir: '/local/hash-dst' };
    const bySize = await create({ name: 'size', ...body });
    const byHash = await create({ name: 'hash', ...body, compare: 'hash' });
    const planOf = async (id: string) =>
      (
        await h.json<{ copy: string[]; skip: number }>('POST', `/api/job/plan?id=${id}`, {
          token: h.adminToken,
        })
      ).data;
    assert.deepEqual(await planOf(bySize.data.id), { copy: [], delete: [], skip: 1 });
    assert.deepEqual(await planOf(byHash.data.id), { copy: ['/a.txt'], delete: [], skip: 0 });
  });

  it('two runs asked at once start one task; the other is told the run is going', async () => {
    await put('twice-src/a.txt');
    const job = await create({
      name: 'twice',
      mode: 'sync',
      src_dir: '/local/twice-src',
      dst_dir: '/local/twice-dst',
    });
    const saved = h.core.runner.getLimits().sync;
    h.core.runner.setLimit('sync', 0);
    try {
      const both = await Promise.all([1, 2].map(() => runJob(job.data.id)));
      assert.deepEqual(both.map((r) => r.code).sort(), [200, 400]);
      assert.equal((await runs(job.data.id)).length, 1);
    } finally {
      h.core.runner.setLimit('sync', saved);
    }
  });

  it('answers bad input with a 400 naming the field', async () => {
    const base = { name: 'bad', mode: 'sync', src_dir: '/local/x', dst_dir: '/local/y' };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, mode: 'mirror' }, /mode must be one of/],
      [{ ...base, schedule: { cron: '* * * *' } }, /five fields/],
      [{ ...base, schedule: { cron: '0 3 * * *', timezone: 'Mars/Olympus' } }, /schedule/],
      [{ ...base, schedule: { every_seconds: 0 } }, /every_seconds/],
      [{ ...base, schedule: { every_seconds: 5, cron: '* * * * *' } }, /not both/],
      [{ ...base, max_delete: -1 }, /max_delete/],
      [{ ...base, include: 'x' }, /include/],
      [{ ...base, conflict: 'keep_both' }, /keep_both/],
      [{ ...base, dst_dir: '/local/x/inner' }, /hold one another/],
    ];
    for (const [body, message] of cases) {
      const res = await create(body);
      assert.equal(res.code, 400, JSON.stringify(body));
      assert.match(res.message, message);
    }
    const unknown = await h.json('GET', '/api/job/get?id=nope', { token: h.adminToken });
    assert.deepEqual(unknown, { code: 404, message: 'job not found', data: null });
    const cron = await create({ ...base, schedule: { cron: '0 3 * * *', timezone: 'Europe/Berlin' } });
    assert.equal(cron.code, 200, cron.message);
    const next = new Date(cron.data.next_run_at ?? '');
    // 03:00 in Berlin is 01:00 or 02:00 UTC.
    assert.ok([1, 2].includes(next.getUTCHours()) && next.getUTCMinutes() === 0, cron.data.next_run_at ?? '');
  });

  it('runs every_seconds repeatedly, and records a skipped run while the last one is still going', async () => {
    await put('every-src/f.txt');
    const job = await create({
      name: 'every',
      mode: 'sync',
      src_dir: '/local/every-src',
      dst_dir: '/local/every-dst',
      schedule: { every_seconds: 1 },
    });
    const done = await waitFor(
      async () => {
        const list = await runs(job.data.id);
        return list.filter((r) => r.state === 'succeeded').length >= 2 ? list : undefined;
      },
      10_000,
      'two scheduled runs',
    );
    assert.ok(done.every((r) => r.state !== 'skipped'));
    // No sync worker: the next run waits in the queue, and the slots after it are skipped.
    const saved = h.core.runner.getLimits().sync;
    h.core.runner.setLimit('sync', 0);
    try {
      const skipped = await waitFor(
        async () => {
          const list = await runs(job.data.id);
          return list.some((r) => r.state === 'skipped') ? list : undefined;
        },
        10_000,
        'a skipped run',
      );
      const row = skipped.find((r) => r.state === 'skipped');
      assert.match(
        (await h.call('GET', '/metrics')).body,
        /^ferry_job_runs_total\{outcome="skipped"\} [1-9]/m,
      );
      assert.equal(row?.task_id, null);
      assert.match(row?.error ?? '', /still going/);
      const byHand = await runJob(job.data.id);
      assert.equal(byHand.code, 400);
      assert.match(byHand.message, /still going/);
    } finally {
      h.core.runner.setLimit('sync', saved);
    }
    const paused = await h.json<JobView>('POST', `/api/job/pause?id=${job.data.id}`, { token: h.adminToken });
    assert.equal(paused.data.enabled, false);
    const count = (await runs(job.data.id)).length;
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await runs(job.data.id)).length, count, 'a paused job does not run');
    const resumed = await h.json<JobView>('POST', `/api/job/resume?id=${job.data.id}`, {
      token: h.adminToken,
    });
    assert.equal(resumed.data.enabled, true);
    assert.equal(
      (await h.json('POST', `/api/job/delete?id=${job.data.id}`, { token: h.adminToken })).code,
      200,
    );
    assert.equal((await h.json('GET', `/api/job/get?id=${job.data.id}`, { token: h.adminToken })).code, 404);
  });
});
