import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { testDatabases } from './helpers/databases.ts';
import { waitFor } from './helpers/harness.ts';
import { type FerryProcess, spawnFerry } from './helpers/process.ts';

/**
 * Schedules across real `ferry serve` processes: a job's schedule survives a restart (slots
 * missed while no server ran give one run at start, not one per slot), and with two nodes on one
 * PostgreSQL every slot starts exactly one run.
 */

const ADMIN_PASSWORD = 'jobs-schedule-admin';
const postgres = (await testDatabases()).find((d) => d.dialect === 'postgres');

interface RunRow {
  task_id: string | null;
  state: string;
  scheduled_at: string | null;
}

async function login(node: FerryProcess): Promise<string> {
  const res = await node.api<{ token: string }>('POST', '/api/auth/login', {
    body: { username: 'admin', password: ADMIN_PASSWORD },
  });
  assert.equal(res.code, 200, `${res.message}\n${node.output()}`);
  return res.data.token;
}

async function everyJob(
  node: FerryProcess,
  token: string,
  seconds: number,
  dataDir: string,
): Promise<string> {
  await mkdir(join(dataDir, 'files', 'sched-src'), { recursive: true });
  await writeFile(join(dataDir, 'files', 'sched-src', 'f.txt'), 'scheduled');
  const res = await node.api<{ id: string }>('POST', '/api/job/create', {
    token,
    body: {
      name: 'every',
      mode: 'sync',
      src_dir: '/local/sched-src',
      dst_dir: '/local/sched-dst',
      schedule: { every_seconds: seconds },
    },
  });
  assert.equal(res.code, 200, res.message);
  return res.data.id;
}

async function runsOf(node: FerryProcess, token: string, id: string): Promise<RunRow[]> {
  const res = await node.api<RunRow[]>('GET', `/api/job/runs?id=${id}`, { token });
  assert.equal(res.code, 200, res.message);
  return res.data;
}

/** The `job run started` lines of a node's debug log: the slots it started. */
function slotsStartedBy(node: FerryProcess, job: string): number[] {
  const slots: number[] = [];
  for (const line of node.output().split('\n')) {
    if (!line.includes('"job run started"')) continue;
    const entry = JSON.parse(line) as { job: string; slot: number | null };
    if (entry.job === job && entry.slot !== null) slots.push(entry.slot);
  }
  return slots;
}

describe('job schedules across processes', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it('survives a restart: the slots missed while down give one run at start, then the schedule goes on', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ferry-jobs-restart-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const env = { FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD };
    let node = await spawnFerry(dataDir, env);
    cleanups.push(() => node.stop());
    let token = await login(node);
    const id = await everyJob(node, token, 2, dataDir);
    await waitFor(
      async () => ((await runsOf(node, token, id)).some((r) => r.state === 'succeeded') ? true : undefined),
      10_000,
      'a first run to succeed',
    );
    const runsAtStop = (await runsOf(node, token, id)).length;
    await node.stop();
    const stoppedAt = Date.now();
    // Down for more than two periods.
    await new Promise((r) => setTimeout(r, 5000));
    // Slots after this are the restarted server's own: it ticks before it answers its first request.
    const restarting = Date.now();
    node = await spawnFerry(dataDir, env);
    token = await login(node);
    const slotOf = (r: RunRow) => Date.parse(r.scheduled_at ?? '');
    const after = await waitFor(
      async () => {
        const list = await runsOf(node, token, id);
        return list.some((r) => slotOf(r) >= restarting && r.state === 'succeeded') ? list : undefined;
      },
      20_000,
      'the missed run and a run of the schedule after it',
    );
    const missed = after.filter((r) => slotOf(r) > stoppedAt && slotOf(r) < restarting);
    assert.equal(missed.length, 1, `one run for the slots missed while down: ${JSON.stringify(after)}`);
    assert.notEqual(missed[0]?.state, 'skipped');
    assert.ok(after.length > runsAtStop + 1);
  });
});

describe('job schedules on two nodes', { skip: postgres ? false : 'PostgreSQL unreachable' }, () => {
  const nodes: FerryProcess[] = [];
  let dataDir = '';
  let drop: () => Promise<void> = async () => undefined;
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('starts each due slot exactly once, whichever node claims it', async () => {
    if (!postgres) return;
    const db = await postgres.create();
    drop = db.drop;
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-jobs-nodes-'));
    const env = {
      FERRY_DATABASE_URL: db.url as string,
      FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      FERRY_LOG_LEVEL: 'debug',
    };
    const a = await spawnFerry(dataDir, env);
    nodes.push(a);
    const b = await spawnFerry(dataDir, env);
    nodes.push(b);
    const token = await login(a);
    const id = await everyJob(a, token, 1, dataDir);
    const runs = await waitFor(
      async () => {
        const list = (await runsOf(b, token, id)).filter((r) => r.scheduled_at !== null);
        return list.length >= 5 ? list : undefined;
      },
      20_000,
      'five scheduled runs',
    );
    const slots = runs.map((r) => Date.parse(r.scheduled_at ?? ''));
    assert.equal(new Set(slots).size, slots.length, 'no slot has two runs');
    const started = [...slotsStartedBy(a, id), ...slotsStartedBy(b, id)];
    assert.equal(new Set(started).size, started.length, `no slot started on both nodes: ${started}`);
    const sorted = [...slots].sort((x, y) => x - y);
    for (let i = 1; i < sorted.length; i++)
      assert.equal(((sorted[i] as number) - (sorted[i - 1] as number)) % 1000, 0, 'slots keep the cadence');
  });
});
