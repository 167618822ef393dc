import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { testDatabases } from './helpers/databases.ts';
import { waitFor } from './helpers/harness.ts';
import { type FerryProcess, spawnFerry } from './helpers/process.ts';

/**
 * Several nodes on one PostgreSQL store (the design's scale-out): two real `ferry serve`
 * processes, started at the same moment on a fresh database and one shared data directory (the
 * shared storage). What a node learns only through the store must work: the first start, the
 * mounts, the claims and the cancels.
 */

const postgres = (await testDatabases()).find((d) => d.dialect === 'postgres');
const ADMIN_PASSWORD = 'multi-node-admin';

interface TaskView {
  id: string;
  state: string;
  error: string;
}

/** The ids of the tasks a node's log says it started (debug line of the runner). */
function startedBy(node: FerryProcess): string[] {
  const ids: string[] = [];
  for (const line of node.output().split('\n')) {
    if (!line.includes('"task started"')) continue;
    ids.push((JSON.parse(line) as { task: string }).task);
  }
  return ids;
}

describe('two nodes on one PostgreSQL store', { skip: postgres ? false : 'PostgreSQL unreachable' }, () => {
  let nodes: FerryProcess[] = [];
  let a: FerryProcess;
  let b: FerryProcess;
  let dataDir: string;
  let drop: () => Promise<void>;
  let token = '';
  let trickle: Server;

  const info = async (node: FerryProcess, type: string, id: string) =>
    (await node.api<TaskView[]>('POST', `/api/task/${type}/info?tid=${id}`, { token })).data?.[0];
  const storages = async (node: FerryProcess) =>
    (
      await node.api<{ content: { id: number; mount_path: string }[] }>('GET', '/api/admin/storage/list', {
        token,
      })
    ).data.content;

  before(async () => {
    if (!postgres) return;
    const db = await postgres.create();
    drop = db.drop;
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-nodes-'));
    const env = {
      FERRY_DATABASE_URL: db.url as string,
      FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      FERRY_LOG_LEVEL: 'debug',
    };
    // At the same moment, on a fresh store: both create the admin, the default mount, the schema.
    const started = await Promise.allSettled([spawnFerry(dataDir, env), spawnFerry(dataDir, env)]);
    nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    [a, b] = nodes as [FerryProcess, FerryProcess];
    // An origin that sends a byte now and then: a download that runs until it is canceled.
    trickle = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': 1 << 20 });
      const timer = setInterval(() => res.write('x'), 50);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    trickle?.closeAllConnections();
    await new Promise((resolve) => trickle?.close(resolve));
    await drop?.();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('start together on a fresh store: one admin, one /local, a token of one node works on the other', async () => {
    const login = await a.api<{ token: string }>('POST', '/api/auth/login', {
      body: { username: 'admin', password: ADMIN_PASSWORD },
    });
    assert.equal(login.code, 200, `${login.message}\n${a.output()}`);
    token = login.data.token;
    const me = await b.api<{ username: string }>('GET', '/api/me', { token });
    assert.equal(me.data.username, 'admin');
    for (const node of [a, b]) {
      const mounts = await storages(node);
      assert.deepEqual(
        mounts.map((m) => m.mount_path),
        ['/local'],
      );
    }
  });

  it('a storage mounted through one node is used by the tasks the other runs, and its removal reaches it', async () => {
    const limits = await a.api<Record<string, number>>('GET', '/api/admin/task/workers', { token });
    // Node A runs no copies: every copy goes to B.
    assert.equal((await a.api('POST', '/api/admin/task/workers', { token, body: { copy: 0 } })).code, 200);
    try {
      const root = join(dataDir, 'extra-root');
      await mkdir(join(root, 'in'), { recursive: true });
      await writeFile(join(root, 'in', 'note.txt'), 'mounted through A');
      const created = await a.api('POST', '/api/admin/storage/create', {
        token,
        body: {
          mount_path: '/extra',
          driver: 'Local',
          addition: JSON.stringify({ root_folder_path: root }),
        },
      });
      assert.equal(created.code, 200, created.message);
      // At once, before any timer of B's could have seen the mount.
      const copy = await a.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token,
        body: { src_dir: '/extra/in', dst_dir: '/local/from-extra', names: ['note.txt'] },
      });
      assert.equal(copy.code, 200, copy.message);
      const id = copy.data.tasks[0]?.id as string;
      const done = await a.finished(token, 'copy', id);
      assert.equal(done.state, 'succeeded', done.error);
      assert.deepEqual(startedBy(a).includes(id), false, 'A runs no copies');
      assert.ok(startedBy(b).includes(id), 'B ran it');
      assert.equal(
        await readFile(join(dataDir, 'files', 'from-extra', 'note.txt'), 'utf8'),
        'mounted through A',
      );

      const extra = (await storages(a)).find((m) => m.mount_path === '/extra');
      assert.equal((await a.api('POST', `/api/admin/storage/delete?id=${extra?.id}`, { token })).code, 200);
      await waitFor(
        async () => ((await storages(b)).some((m) => m.mount_path === '/extra') ? undefined : true),
        5000,
        'B to drop /extra',
      );
    } finally {
      await a.api('POST', '/api/admin/task/workers', { token, body: { copy: limits.data.copy } });
    }
  });

  it('tasks created through both nodes at once each run exactly once, on both nodes', async () => {
    const src = join(dataDir, 'files', 'many');
    await mkdir(src, { recursive: true });
    const names = Array.from({ length: 60 }, (_, i) => `f${i}.txt`);
    for (const name of names) await writeFile(join(src, name), `content of ${name}`);
    const created = await Promise.all(
      [a, b].map((node, n) =>
        node.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
          token,
          body: {
            src_dir: '/local/many',
            dst_dir: '/local/many-copy',
            names: names.filter((_, i) => i % 2 === n),
          },
        }),
      ),
    );
    const ids = created.flatMap((r) => r.data.tasks.map((t) => t.id));
    assert.equal(ids.length, names.length);
    for (const id of ids) assert.equal((await b.finished(token, 'copy', id)).state, 'succeeded');
    const onA = startedBy(a).filter((id) => ids.includes(id));
    const onB = startedBy(b).filter((id) => ids.includes(id));
    assert.equal(onA.length + onB.length, ids.length, 'no task started twice');
    assert.deepEqual([...new Set([...onA, ...onB])].sort(), [...ids].sort());
    assert.ok(onA.length > 0 && onB.length > 0, `both nodes ran tasks (A ${onA.length}, B ${onB.length})`);
    for (const name of names)
      assert.equal(await readFile(join(dataDir, 'files', 'many-copy', name), 'utf8'), `content of ${name}`);
  });

  it('an SSE stream on one node shows the tasks the other runs, and their removal', async () => {
    const limits = await b.api<Record<string, number>>('GET', '/api/admin/task/workers', { token });
    // B runs no copies: the copy below runs on A, and B hears of it only through the store.
    assert.equal((await b.api('POST', '/api/admin/task/workers', { token, body: { copy: 0 } })).code, 200);
    const stream = await request(`${b.base}/api/task/events?type=copy`, {
      headers: { authorization: token },
    });
    try {
      let text = '';
      const events: { event: string; data: unknown }[] = [];
      const reading = (async () => {
        for await (const chunk of stream.body) {
          text += chunk.toString();
          for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
            const block = text.slice(0, end);
            text = text.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) events.push({ event, data: JSON.parse(data) });
          }
        }
      })().catch(() => undefined);
      await mkdir(join(dataDir, 'files', 'sse'), { recursive: true });
      await writeFile(join(dataDir, 'files', 'sse', 'x.txt'), 'watched from the other node');
      const copy = await a.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token,
        body: { src_dir: '/local/sse', dst_dir: '/local/sse-copy', names: ['x.txt'] },
      });
      const id = copy.data.tasks[0]?.id as string;
      await waitFor(
        async () =>
          events.some(
            (e) =>
              e.event === 'task' &&
              (e.data as TaskView).id === id &&
              (e.data as TaskView).state === 'succeeded',
          )
            ? true
            : undefined,
        10_000,
        `B's stream to show ${id} succeeded`,
      );
      assert.ok(startedBy(a).includes(id) && !startedBy(b).includes(id), 'A ran it');
      assert.equal((await a.api('POST', `/api/task/copy/delete?tid=${id}`, { token })).code, 200);
      await waitFor(
        async () =>
          events.some((e) => e.event === 'removed' && (e.data as string[]).includes(id)) ? true : undefined,
        10_000,
        `B's stream to show ${id} removed`,
      );
      stream.body.destroy();
      await reading;
    } finally {
      stream.body.destroy();
      await b.api('POST', '/api/admin/task/workers', { token, body: { copy: limits.data.copy } });
    }
  });

  it('a cancel sent to the node that does not run the task stops it within a second', async () => {
    const url = `http://127.0.0.1:${(trickle.address() as AddressInfo).port}/slow.bin`;
    const res = await a.api<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
      token,
      body: { urls: [url], path: '/local/slow', tool: 'SimpleHttp' },
    });
    assert.equal(res.code, 200, res.message);
    const id = res.data.tasks[0]?.id as string;
    const runner = await waitFor(
      async () => (startedBy(a).includes(id) ? a : startedBy(b).includes(id) ? b : undefined),
      10_000,
      'a node to start the download',
    );
    await waitFor(async () =>
      (await info(runner, 'offline_download', id))?.state === 'running' ? true : undefined,
    );
    const other = runner === a ? b : a;
    const asked = Date.now();
    const cancel = await other.api('POST', `/api/task/offline_download/cancel?tid=${id}`, { token });
    assert.equal(cancel.code, 200, cancel.message);
    const ended = await other.finished(token, 'offline_download', id, 5000);
    const took = Date.now() - asked;
    assert.equal(ended.state, 'canceled');
    assert.ok(took < 1000, `canceled after ${took} ms`);
  });
});
