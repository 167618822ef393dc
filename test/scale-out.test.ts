import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { request } from 'undici';
import { testDatabases } from './helpers/databases.ts';
import { waitFor } from './helpers/harness.ts';
import { type FerryProcess, spawnFerry } from './helpers/process.ts';
import { type RangedOrigin, startRangedOrigin } from './helpers/ranged-origin.ts';
import { startRclone } from './helpers/rclone.ts';
import { startRecordingProxy } from './helpers/recording-proxy.ts';

/**
 * Scale-out that holds (issue 22): real `ferry serve` processes on one PostgreSQL store, each
 * with a data directory of its own and one shared staging directory, a short lease. A node
 * killed (-9) or paused (SIGSTOP) in the middle of downloads: the others take its tasks over
 * within a lease and a poll, resume them where they stood (the origin sees a Range request),
 * and the paused one, woken, writes nothing.
 */

const postgres = (await testDatabases()).find((d) => d.dialect === 'postgres');
const ADMIN_PASSWORD = 'scale-out-admin';
const LEASE_MS = 2000;
/** What "taken over within the lease" allows on top of it: a poll, a claim, a loaded machine. */
const TAKEOVER_SLACK_MS = 2000;

interface Detail {
  id: string;
  state: string;
  error: string;
  processed_bytes: number;
  total_bytes: number;
  node: string | null;
  lease_renewed_ago_ms: number | null;
  holder_stalled: boolean;
}

interface NodeRow {
  id: string;
  host: string;
  pid: number;
  start_time: string;
  last_heartbeat: string;
  running: Record<string, number>;
  workers: Record<string, number>;
  this_node: boolean;
}

describe('scale-out on one PostgreSQL store', { skip: postgres ? false : 'PostgreSQL unreachable' }, () => {
  const nodes: FerryProcess[] = [];
  const dirs: string[] = [];
  let staging: string;
  let files: string;
  let origin: RangedOrigin;
  let drop: () => Promise<void>;
  let env: Record<string, string>;
  let db: pg.Client;
  let token = '';

  const spawnNode = async (extra: Record<string, string> = {}) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ferry-scale-node-'));
    dirs.push(dataDir);
    const node = await spawnFerry(dataDir, { ...env, ...extra });
    nodes.push(node);
    return node;
  };
  const idOf = async (node: FerryProcess) =>
    (await node.api<{ content: NodeRow[] }>('GET', '/api/admin/nodes', { token })).data.content.find(
      (n) => n.this_node,
    )?.id as string;
  const setWorkers = async (node: FerryProcess, workers: Record<string, number>) =>
    assert.equal((await node.api('POST', '/api/admin/task/workers', { token, body: workers })).code, 200);
  const detail = async (node: FerryProcess, type: string, id: string) =>
    (await node.api<Detail[]>('POST', `/api/task/${type}/info?tid=${id}`, { token })).data?.[0];
  const download = async (node: FerryProcess, names: string[], dir: string) => {
    const res = await node.api<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
      token,
      body: {
        urls: names.map((n) => `${origin.base}/${n}`),
        path: `/local/${dir}`,
        tool: 'SimpleHttp',
        delete_policy: 'delete_on_upload_succeed',
      },
    });
    assert.equal(res.code, 200, res.message);
    return res.data.tasks.map((t) => t.id);
  };
  /** PUT `body` to `path` on `node` as a task (spooled in the shared staging dir); its task id. */
  const uploadAsTask = async (node: FerryProcess, path: string, body: Buffer) => {
    const res = await request(`${node.base}/api/fs/put`, {
      method: 'PUT',
      headers: {
        authorization: token,
        'file-path': encodeURIComponent(path),
        'as-task': 'true',
        'content-type': 'application/octet-stream',
      },
      body,
    });
    const reply = (await res.body.json()) as {
      code: number;
      message: string;
      data: { task: { id: string } };
    };
    assert.equal(reply.code, 200, reply.message);
    return reply.data.task.id;
  };
  /** Wait until every task of `ids` runs on `node` and has moved at least `bytes` bytes. */
  const runningOn = (node: FerryProcess, nodeId: string, ids: string[], bytes: number) =>
    waitFor(
      async () => {
        for (const id of ids) {
          const t = await detail(node, 'offline_download', id);
          if (t?.state !== 'running' || t.node !== nodeId || t.processed_bytes < bytes) return undefined;
        }
        return true;
      },
      15_000,
      `${ids.length} downloads to run on ${nodeId}`,
      50,
    );
  /**
   * When every task of `ids` is held by `owner`, read straight from the store every 20 ms: the
   * takeover's time, not the time a loaded node takes to answer a poll of its API.
   */
  const heldBy = (owner: string, ids: string[]) =>
    waitFor(
      async () => {
        const { rows } = await db.query<{ n: string }>(
          "SELECT count(*) AS n FROM tasks WHERE id = ANY($1) AND lease_owner = $2 AND state = 'running'",
          [ids, owner],
        );
        return Number(rows[0]?.n) === ids.length ? Date.now() : undefined;
      },
      15_000,
      `${owner} to hold ${ids.length} tasks`,
      20,
    );
  /** The downloaded files in place, byte for byte what the origin serves, and fetched once whole. */
  const assertLanded = async (names: string[], dir: string) => {
    for (const name of names) {
      const path = join(files, dir, name);
      await waitFor(
        async () =>
          (await stat(path).catch(() => null))?.size === origin.content(name).length ? true : undefined,
        15_000,
        `${name} in place`,
      );
      assert.ok((await readFile(path)).equals(origin.content(name)), `${name} byte-identical`);
      const asked = origin.requests.filter((r) => r.path === `/${name}`);
      assert.equal(
        asked.filter((r) => r.range === null).length,
        1,
        `${name}: one whole GET, ${JSON.stringify(asked)}`,
      );
      assert.ok(
        asked.some((r) => r.range !== null && /^bytes=[1-9]\d*-$/.test(r.range)),
        `${name}: resumed with a Range request, ${JSON.stringify(asked)}`,
      );
    }
  };

  before(async () => {
    if (!postgres) return;
    const schema = await postgres.create();
    drop = schema.drop;
    db = new pg.Client({ connectionString: schema.url as string });
    await db.connect();
    staging = await mkdtemp(join(tmpdir(), 'ferry-scale-staging-'));
    // 768 KiB at about 270 KB/s: three seconds a file, long enough to die in the middle of.
    origin = await startRangedOrigin({ size: 768 * 1024, chunk: 16 * 1024, everyMs: 60 });
    env = {
      FERRY_DATABASE_URL: schema.url as string,
      FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      FERRY_LEASE_MS: String(LEASE_MS),
      FERRY_STAGING_DIR: staging,
      FERRY_LOG_LEVEL: 'debug',
    };
    // The first node creates the schema, the admin and /local (in its own data directory, which
    // stands for the shared storage); the others join it.
    await spawnNode();
    await Promise.all([spawnNode(), spawnNode()]);
    const login = await nodes[0]?.api<{ token: string }>('POST', '/api/auth/login', {
      body: { username: 'admin', password: ADMIN_PASSWORD },
    });
    token = login?.data.token as string;
    files = join(dirs[0] as string, 'files');
  });

  after(async () => {
    for (const node of nodes) {
      if (node.child.signalCode === null && node.child.exitCode === null) process.kill(node.pid, 'SIGCONT');
    }
    await Promise.all(nodes.map((n) => n.stop()));
    await origin?.close();
    await db?.end();
    await drop?.();
    for (const dir of [...dirs, staging]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists the live nodes with what each runs and its limits; a dead one drops out', async () => {
    const [a] = nodes as [FerryProcess];
    const listed = await a.api<{ content: NodeRow[]; total: number }>('GET', '/api/admin/nodes', { token });
    assert.equal(listed.code, 200, listed.message);
    assert.equal(listed.data.total, 3);
    assert.deepEqual(listed.data.content.map((n) => n.pid).sort(), nodes.map((n) => n.pid).sort());
    for (const n of listed.data.content) {
      assert.ok(n.id && n.host && Date.parse(n.start_time) > 0 && Date.parse(n.last_heartbeat) > 0);
      assert.equal(typeof n.workers.offline_download, 'number');
      assert.deepEqual(n.running, {});
    }
    const guest = await a.api('GET', '/api/admin/nodes');
    assert.notEqual(guest.code, 200, 'admin only');
  });

  it('kill -9 of one of two nodes mid-download: the other takes over within the lease, resumes with Range, byte-identical', async (t) => {
    const [a, b, c] = nodes as [FerryProcess, FerryProcess, FerryProcess];
    await setWorkers(b, { offline_download: 0 });
    await setWorkers(c, { offline_download: 0, offline_download_transfer: 0 });
    const names = ['one-a.bin', 'one-b.bin', 'one-c.bin'];
    const ids = await download(a, names, 'one');
    const aId = await idOf(a);
    const bId = await idOf(b);
    await runningOn(b, aId, ids, 128 * 1024);
    const onA = await b.api<{ content: NodeRow[] }>('GET', '/api/admin/nodes', { token });
    assert.equal(onA.data.content.find((n) => n.id === aId)?.running.offline_download, 3);

    await setWorkers(b, { offline_download: 3 });
    const killed = Date.now();
    await a.kill9();
    const took = (await heldBy(bId, ids)) - killed;
    t.diagnostic(`taken over ${took} ms after the kill (lease ${LEASE_MS} ms)`);
    await runningOn(b, bId, ids, 0);
    assert.ok(took <= LEASE_MS + TAKEOVER_SLACK_MS, `taken over ${took} ms after the kill`);
    const held = await detail(b, 'offline_download', ids[0] as string);
    assert.equal(held?.holder_stalled, false);
    assert.ok((held?.lease_renewed_ago_ms ?? Infinity) < LEASE_MS);
    for (const id of ids)
      assert.equal((await b.finished(token, 'offline_download', id, 15_000)).state, 'succeeded');
    await assertLanded(names, 'one');
    // The dead node drops out of the list once its heartbeat is a lease old.
    const live = await b.api<{ content: NodeRow[] }>('GET', '/api/admin/nodes', { token });
    assert.ok(!live.data.content.some((n) => n.id === aId));
  });

  it('kill -9 of two of three nodes mid-download: the third takes all over and resumes them', async (t) => {
    const d = await spawnNode();
    const [, b, c] = nodes as [FerryProcess, FerryProcess, FerryProcess];
    await setWorkers(b, { offline_download: 2 });
    await setWorkers(d, { offline_download: 2 });
    const names = ['two-a.bin', 'two-b.bin', 'two-c.bin', 'two-d.bin'];
    const ids = await download(c, names, 'two');
    const [bId, cId, dId] = await Promise.all([idOf(b), idOf(c), idOf(d)]);
    await waitFor(
      async () => {
        const all = await Promise.all(ids.map((id) => detail(c, 'offline_download', id)));
        const ok = all.every(
          (t) =>
            t?.state === 'running' && (t.node === bId || t.node === dId) && t.processed_bytes >= 128 * 1024,
        );
        return ok && all.some((t) => t?.node === bId) && all.some((t) => t?.node === dId) ? true : undefined;
      },
      15_000,
      'the downloads to run on B and D',
      50,
    );
    await setWorkers(c, { offline_download: 4, offline_download_transfer: 4 });
    const killed = Date.now();
    await Promise.all([b.kill9(), d.kill9()]);
    const took = (await heldBy(cId, ids)) - killed;
    t.diagnostic(`taken over ${took} ms after the kill (lease ${LEASE_MS} ms)`);
    await runningOn(c, cId, ids, 0);
    assert.ok(took <= LEASE_MS + TAKEOVER_SLACK_MS, `taken over ${took} ms after the kills`);
    for (const id of ids)
      assert.equal((await c.finished(token, 'offline_download', id, 15_000)).state, 'succeeded');
    await assertLanded(names, 'two');
  });

  it('SIGSTOP past the lease: another node finishes; the woken one writes nothing, moves nothing back, and says it lost the lease', async () => {
    const e = await spawnNode();
    const c = nodes[2] as FerryProcess;
    await setWorkers(c, { offline_download: 0 });
    const [id] = await download(e, ['paused.bin'], 'paused');
    assert.ok(id);
    const eId = await idOf(e);
    await runningOn(c, eId, [id], 128 * 1024);
    process.kill(e.pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    try {
      // No node may take it yet: its detail shows the holder stopped renewing, and who it is.
      const stalled = await waitFor(
        async () => {
          const t = await detail(c, 'offline_download', id);
          return t?.holder_stalled ? t : undefined;
        },
        2 * LEASE_MS,
        'the task to show its holder stalled',
        50,
      );
      assert.equal(stalled.node, eId);
      assert.equal(stalled.state, 'running');
      assert.ok((stalled.lease_renewed_ago_ms ?? 0) > (2 * LEASE_MS) / 3);
      await setWorkers(c, { offline_download: 1 });
      const states: string[] = [];
      const watch = setInterval(() => {
        void detail(c, 'offline_download', id).then((t) => t && states.push(t.state));
      }, 50);
      try {
        assert.equal((await c.finished(token, 'offline_download', id, 15_000)).state, 'succeeded');
        await assertLanded(['paused.bin'], 'paused');
        const placed = await stat(join(files, 'paused', 'paused.bin'));
        // Paused for at least twice the lease, then woken.
        await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + 2 * LEASE_MS - Date.now())));
        process.kill(e.pid, 'SIGCONT');
        await waitFor(
          async () => (e.output().includes('"lost the lease"') ? true : undefined),
          LEASE_MS + TAKEOVER_SLACK_MS,
          'the woken node to log that it lost the lease',
        );
        await new Promise((r) => setTimeout(r, LEASE_MS));
        const now = await stat(join(files, 'paused', 'paused.bin'));
        assert.equal(now.ino, placed.ino, 'not renamed over');
        assert.equal(now.mtimeMs, placed.mtimeMs, 'not written again');
        assert.ok((await readFile(join(files, 'paused', 'paused.bin'))).equals(origin.content('paused.bin')));
        assert.equal((await detail(c, 'offline_download', id))?.state, 'succeeded');
        // One hand-off only: the woken node queued no second transfer.
        assert.equal((await detail(c, 'offline_download_transfer', `${id}-t0`))?.state, 'succeeded');
      } finally {
        clearInterval(watch);
      }
      const order = ['pending', 'running', 'succeeded'];
      const ranks = states.map((s) => order.indexOf(s));
      assert.deepEqual(
        ranks,
        [...ranks].sort((x, y) => x - y),
        `states never go back: ${states.join(' ')}`,
      );
    } finally {
      process.kill(e.pid, 'SIGCONT');
    }
  });

  it('KooDrive: four inserters on two nodes, a reader paging at pageSize 7 sees every task exactly once', async () => {
    const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
    const [x, y] = live as [FerryProcess, FerryProcess];
    assert.ok(x && y);
    // Nothing runs: the tasks stay as inserted, the test is about the list.
    for (const node of [x, y]) await setWorkers(node, { copy: 0 });
    await mkdir(join(files, 'koo-src'), { recursive: true });
    for (const name of ['a', 'b', 'c']) await writeFile(join(files, 'koo-src', name), name);
    const created: string[] = [];
    let inserting = true;
    const inserter = async (node: FerryProcess, n: number) => {
      for (let i = 0; i < 25; i++) {
        const names = ['a', 'b', 'c'].slice(0, 1 + ((i + n) % 3));
        const res = await node.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
          token,
          body: { src_dir: '/local/koo-src', dst_dir: '/local/koo', names },
        });
        assert.equal(res.code, 200, res.message);
        created.push(...res.data.tasks.map((t) => t.id));
      }
    };
    const seen: string[] = [];
    const reader = async () => {
      let cursor: string | undefined;
      for (let turn = 0; ; turn++) {
        const node = turn % 2 ? x : y;
        const res = await request(
          `${node.base}/koodrive/ose/v1/task/list?taskType=0&pageSize=7${cursor ? `&pageCursor=${cursor}` : ''}`,
          { headers: { authorization: `Bearer ${token}` } },
        );
        const body = (await res.body.json()) as { taskList: { taskId: string }[]; nextCursor?: string };
        assert.equal(res.statusCode, 200);
        if (body.nextCursor !== undefined) {
          seen.push(...body.taskList.map((t) => t.taskId));
          cursor = body.nextCursor;
        } else if (!inserting) {
          seen.push(...body.taskList.map((t) => t.taskId));
          return;
        } else {
          // The last page so far: a client comes back later from the same cursor.
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const reading = reader();
    await Promise.all([inserter(x, 0), inserter(x, 1), inserter(y, 2), inserter(y, 3)]);
    inserting = false;
    await reading;
    const duplicates = seen.filter((id, i) => seen.indexOf(id) !== i);
    assert.deepEqual(duplicates, [], 'no task seen twice');
    const missing = created.filter((id) => !seen.includes(id));
    assert.deepEqual(missing, [], 'no task skipped');
    assert.ok(created.length >= 150);
    // Gone again, so that no later node runs them.
    const removed = await x.api<Record<string, string>>('POST', '/api/task/copy/delete_some', {
      token,
      body: created,
    });
    assert.equal(removed.code, 200, removed.message);
    assert.deepEqual(removed.data, {});
  });

  it('SIGTERM hands a node’s tasks back at once: another continues them long before the lease would end', async (t) => {
    // A node with a long lease: only its hand-back can explain a quick takeover.
    const f = await spawnNode({ FERRY_LEASE_MS: '30000' });
    const live = nodes.filter((n) => n !== f && n.child.exitCode === null && n.child.signalCode === null);
    const x = live[0] as FerryProcess;
    for (const node of live) await setWorkers(node, { offline_download: 0 });
    const names = ['term-a.bin', 'term-b.bin'];
    const ids = await download(f, names, 'term');
    const fId = await idOf(f);
    const xId = await idOf(x);
    await runningOn(x, fId, ids, 128 * 1024);
    await setWorkers(x, { offline_download: 2, offline_download_transfer: 2 });
    await f.stop();
    const exited = Date.now();
    const took = (await heldBy(xId, ids)) - exited;
    t.diagnostic(`taken over ${took} ms after the SIGTERMed node exited (its lease 30 s)`);
    assert.ok(took < 3000, `taken over ${took} ms after the exit`);
    for (const id of ids)
      assert.equal((await x.finished(token, 'offline_download', id, 15_000)).state, 'succeeded');
    await assertLanded(names, 'term');
    assert.ok(
      !(await x.api<{ content: NodeRow[] }>('GET', '/api/admin/nodes', { token })).data.content.some(
        (n) => n.id === fId,
      ),
      'a stopped node leaves the list',
    );
  });

  it('kill -9 mid-copy: another node takes the copy over within the lease, skips the files already copied, byte-identical', async (t) => {
    const dav = await startRclone('webdav', { args: ['--bwlimit', '384k'] });
    try {
      // Files of growing size from a slow WebDAV server: the small ones land first.
      const sizes = [32, 64, 128, 256, 512, 1024].map((k) => k * 1024);
      await mkdir(join(dav.root, 'tree'), { recursive: true });
      for (const [i, size] of sizes.entries())
        await writeFile(join(dav.root, 'tree', `f${i}.bin`), origin.content(`copy-${i}`).subarray(0, size));
      const g = await spawnNode();
      const live = nodes.filter((n) => n !== g && n.child.exitCode === null && n.child.signalCode === null);
      const x = live[0] as FerryProcess;
      for (const node of live) await setWorkers(node, { copy: 0 });
      await setWorkers(g, { copy: 1 });
      const created = await g.api('POST', '/api/admin/storage/create', {
        token,
        body: {
          mount_path: '/dav',
          driver: 'WebDav',
          addition: JSON.stringify({ address: dav.address, username: dav.username, password: dav.password }),
        },
      });
      assert.equal(created.code, 200, created.message);
      const res = await g.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token,
        body: { src_dir: '/dav', dst_dir: '/local/copied', names: ['tree'] },
      });
      assert.equal(res.code, 200, res.message);
      const id = res.data.tasks[0]?.id as string;
      const landed = async () => {
        const out = new Map<string, { ino: number; mtimeMs: number }>();
        for (const [i, size] of sizes.entries()) {
          const s = await stat(join(files, 'copied', 'tree', `f${i}.bin`)).catch(() => null);
          if (s?.size === size) out.set(`f${i}.bin`, { ino: s.ino, mtimeMs: s.mtimeMs });
        }
        return out;
      };
      const before = await waitFor(
        async () => {
          const now = await landed();
          return now.size >= 2 ? now : undefined;
        },
        15_000,
        'two files copied',
        20,
      );
      await g.kill9();
      const killed = Date.now();
      assert.ok(before.size < sizes.length, 'killed in the middle of the copy');
      const held = (
        await x.api<(Detail & { retries: number })[]>('POST', `/api/task/copy/info?tid=${id}`, { token })
      ).data?.[0];
      assert.equal(held?.state, 'running', `${JSON.stringify(held)}\n${g.output().slice(-3000)}`);
      await setWorkers(x, { copy: 1 });
      const xId = await idOf(x);
      const took = (await heldBy(xId, [id])) - killed;
      t.diagnostic(
        `copy taken over ${took} ms after the kill, ${before.size} of ${sizes.length} files in place then`,
      );
      assert.ok(took <= LEASE_MS + TAKEOVER_SLACK_MS, `taken over ${took} ms after the kill`);
      assert.equal((await x.finished(token, 'copy', id, 20_000)).state, 'succeeded');
      for (const [i, size] of sizes.entries()) {
        const got = await readFile(join(files, 'copied', 'tree', `f${i}.bin`));
        assert.ok(got.equals(origin.content(`copy-${i}`).subarray(0, size)), `f${i}.bin byte-identical`);
      }
      const after = await landed();
      for (const [name, was] of before)
        assert.deepEqual(after.get(name), was, `${name}, copied before the kill, is not written again`);
    } finally {
      await dav.close();
    }
  });

  it('SIGSTOP mid-copy past the lease: another node copies the file; the woken one places nothing, leaves no temp, and says it lost the lease', async (t) => {
    const h = await spawnNode();
    const live = nodes.filter((n) => n !== h && n.child.exitCode === null && n.child.signalCode === null);
    const x = live[0] as FerryProcess;
    for (const node of live) await setWorkers(node, { copy: 0 });
    await setWorkers(h, { copy: 1 });
    // 1.5 MiB from a WebDAV server at 384 KiB/s: seconds a copy, long enough to pause in. rclone's
    // limiter saves up what an idle server did not send (up to 4 MiB) and lets it through at
    // once, so the server starts only now, with everything else ready.
    const dav = await startRclone('webdav', { args: ['--bwlimit', '384k'] });
    try {
      const content = randomBytes(1536 * 1024);
      await mkdir(join(dav.root, 'one'), { recursive: true });
      await writeFile(join(dav.root, 'one', 'big.bin'), content);
      const created = await h.api('POST', '/api/admin/storage/create', {
        token,
        body: {
          mount_path: '/dav-stopped',
          driver: 'WebDav',
          addition: JSON.stringify({ address: dav.address, username: dav.username, password: dav.password }),
        },
      });
      assert.equal(created.code, 200, created.message);
      const res = await h.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token,
        body: { src_dir: '/dav-stopped/one', dst_dir: '/local/stopped-copy', names: ['big.bin'] },
      });
      assert.equal(res.code, 200, res.message);
      const id = res.data.tasks[0]?.id as string;
      const hId = await idOf(h);
      let seen: Detail | undefined;
      await waitFor(
        async () => {
          const t = await detail(x, 'copy', id);
          seen = t;
          return t?.state === 'running' && t.node === hId && t.processed_bytes >= 128 * 1024
            ? true
            : undefined;
        },
        15_000,
        'the copy to run on the node to pause',
        20,
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(seen)} (node ${hId})\n${h.output().slice(-3000)}`);
      });
      process.kill(h.pid, 'SIGSTOP');
      const stoppedAt = Date.now();
      t.diagnostic(`paused at ${(await detail(x, 'copy', id))?.processed_bytes} bytes`);
      try {
        await setWorkers(x, { copy: 1 });
        const finished = await x.finished(token, 'copy', id, 20_000).catch(async (err: Error) => {
          const now = await detail(x, 'copy', id);
          throw new Error(`${err.message}: ${JSON.stringify(now)}\n${x.output().slice(-3000)}`);
        });
        assert.equal(finished.state, 'succeeded');
        t.diagnostic(`the other node finished ${Date.now() - stoppedAt} ms after the pause`);
        const dst = join(files, 'stopped-copy', 'big.bin');
        assert.ok((await readFile(dst)).equals(content), 'byte-identical');
        const placed = await stat(dst);
        await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + 2 * LEASE_MS - Date.now())));
        process.kill(h.pid, 'SIGCONT');
        const lost = await waitFor(
          async () =>
            h
              .output()
              .split('\n')
              .find((line) => line.includes('"lost the lease"') && line.includes(id)),
          LEASE_MS + TAKEOVER_SLACK_MS,
          'the woken node to log that it lost the copy’s lease',
        );
        t.diagnostic(lost);
        // Time for the rest of its bytes to arrive, had it gone on to place them.
        await new Promise((r) => setTimeout(r, LEASE_MS));
        const now = await stat(dst);
        assert.equal(now.ino, placed.ino, 'not renamed over');
        assert.equal(now.mtimeMs, placed.mtimeMs, 'not written again');
        assert.ok((await readFile(dst)).equals(content), 'still byte-identical');
        assert.deepEqual(await readdir(join(files, 'stopped-copy')), ['big.bin'], 'no temp file left');
        assert.equal((await detail(x, 'copy', id))?.state, 'succeeded');
      } finally {
        process.kill(h.pid, 'SIGCONT');
      }
    } finally {
      // Out of the way of the next case, which counts the live nodes.
      await h.stop();
      await dav.close();
    }
  });

  it('kill -9 of the node that accepted an upload: another places it from the shared staging dir, byte-identical', async () => {
    const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
    const [x, y] = live as [FerryProcess, FerryProcess];
    for (const node of [x, y]) await setWorkers(node, { upload: 0 });
    const body = origin.content('uploaded.bin');
    const id = await uploadAsTask(y, '/local/up/uploaded.bin', body);
    await y.kill9();
    await setWorkers(x, { upload: 1 });
    assert.equal((await x.finished(token, 'upload', id, 10_000)).state, 'succeeded');
    assert.ok((await readFile(join(files, 'up', 'uploaded.bin'))).equals(body));
  });

  it('kill -9 of two of three nodes mid-copy, an upload waiting: the third resumes both copies with Range where they stood and places the upload', async (t) => {
    const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
    const survivor = live[0] as FerryProcess;
    const [p, q] = [await spawnNode(), await spawnNode()];
    for (const node of [...live, p, q]) await setWorkers(node, { copy: 0, upload: 0 });
    // Two 2 MiB files from a WebDAV server at 512 KiB/s (both share it): seconds each, long
    // enough to record checkpoints and die in the middle. The server starts only now (rclone's
    // limiter saves up what an idle server did not send), and a proxy in front of it records
    // every request the nodes make.
    const dav = await startRclone('webdav', { args: ['--bwlimit', '512k'] });
    const proxy = await startRecordingProxy(dav.address);
    try {
      const names = ['r0.bin', 'r1.bin'];
      const contents = names.map(() => randomBytes(2 * 1024 * 1024));
      await mkdir(join(dav.root, 'resume'), { recursive: true });
      for (const [i, name] of names.entries())
        await writeFile(join(dav.root, 'resume', name), contents[i] as Buffer);
      const created = await p.api('POST', '/api/admin/storage/create', {
        token,
        body: {
          mount_path: '/dav-resume',
          driver: 'WebDav',
          addition: JSON.stringify({
            address: proxy.address,
            username: dav.username,
            password: dav.password,
          }),
        },
      });
      assert.equal(created.code, 200, created.message);
      const ids: string[] = [];
      for (const name of names) {
        const res = await p.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
          token,
          body: { src_dir: '/dav-resume/resume', dst_dir: '/local/resumed', names: [name] },
        });
        assert.equal(res.code, 200, res.message);
        ids.push(res.data.tasks[0]?.id as string);
      }
      // An upload accepted by P, spooled in the shared staging directory, not yet placed.
      const body = randomBytes(300 * 1024);
      const uploadId = await uploadAsTask(p, '/local/resumed/up.bin', body);

      await setWorkers(p, { copy: 1 });
      await setWorkers(q, { copy: 1 });
      const [pId, qId, survivorId] = await Promise.all([idOf(p), idOf(q), idOf(survivor)]);
      // Each copy runs on one of P and Q and has recorded a checkpoint past 256 KiB.
      await waitFor(
        async () => {
          const all = await Promise.all(ids.map((id) => detail(survivor, 'copy', id)));
          if (!all.every((d) => d?.state === 'running' && (d.node === pId || d.node === qId)))
            return undefined;
          if (all[0]?.node === all[1]?.node) return undefined;
          const { rows } = await db.query<{ payload: string }>(
            'SELECT payload FROM tasks WHERE id = ANY($1)',
            [ids],
          );
          const done = rows.map((r) =>
            Object.values(
              (JSON.parse(r.payload) as { partials?: Record<string, { done: number }> }).partials ?? {},
            ),
          );
          return done.every((d) => (d[0]?.done ?? 0) >= 256 * 1024) ? true : undefined;
        },
        20_000,
        'both copies to run on P and Q and record a checkpoint',
        50,
      );
      await setWorkers(survivor, { copy: 2, upload: 1 });
      const killed = Date.now();
      await Promise.all([p.kill9(), q.kill9()]);
      const took = (await heldBy(survivorId, ids)) - killed;
      t.diagnostic(`copies taken over ${took} ms after the kills (lease ${LEASE_MS} ms)`);
      assert.ok(took <= LEASE_MS + TAKEOVER_SLACK_MS, `taken over ${took} ms after the kills`);
      for (const id of ids)
        assert.equal((await survivor.finished(token, 'copy', id, 30_000)).state, 'succeeded');
      assert.equal((await survivor.finished(token, 'upload', uploadId, 10_000)).state, 'succeeded');
      assert.ok((await readFile(join(files, 'resumed', 'up.bin'))).equals(body), 'upload byte-identical');
      for (const [i, name] of names.entries()) {
        assert.ok(
          (await readFile(join(files, 'resumed', name))).equals(contents[i] as Buffer),
          `${name} byte-identical`,
        );
        const reads = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/resume/${name}`));
        const after = reads.filter((r) => r.at > killed);
        t.diagnostic(`${name}: ${reads.map((r) => r.range).join(', ')}`);
        assert.ok(after.length > 0, `${name} read after the kill`);
        for (const r of after) {
          const from = Number(/^bytes=(\d+)-/.exec(r.range ?? '')?.[1] ?? 0);
          assert.ok(
            from >= 256 * 1024,
            `${name}: after the kill only the rest is read, not from byte 0: ${r.range}`,
          );
        }
      }
      assert.deepEqual(
        (await readdir(join(files, 'resumed'))).sort(),
        ['r0.bin', 'r1.bin', 'up.bin'],
        'no temp left',
      );
    } finally {
      await proxy.close();
      await dav.close();
    }
  });
});
