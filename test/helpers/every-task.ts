import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { TextReader, Uint8ArrayWriter, ZipWriter } from '@zip.js/zip.js';
import { type Harness, isFinished, waitFor } from './harness.ts';

/** A task as any AList reply carries it; its fields are checked by the tests, not trusted here. */
export type TaskReply = Record<string, unknown> & { id: string; name: string };

/** Every AList reply that carries tasks, labelled, and the tasks made, by type. */
export interface EveryTask {
  /** `label` says which request answered: `PUT /api/fs/put`, `GET .../copy/done`, … */
  replies: { label: string; tasks: TaskReply[] }[];
  /** Type → the ids made of it. */
  ids: Record<string, string[]>;
  /** The URL the offline download was given. */
  url: string;
  /** The archive passwords given to the decompress tasks, by id. */
  passwords: Map<string, string>;
}

/** A loopback HTTP server answering every GET with the same small file. */
export async function startFileServer(): Promise<{ base: string; close(): Promise<void> }> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '11' });
    res.end('hello world');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Make one task of every AList type through the routes under `prefix` (`''` or `/@openlist`) as
 * the admin, in a folder `/local/<tag>` of its own, each waited for: an upload, a copy, a move, a
 * delete (fs/remove), an offline download (and its transfer), a decompress to Local and, when
 * `davMount` is given, a decompress to it (and its decompress_upload). Then read every task back
 * through info, done (whole and paged) and undone. Every reply is kept for the caller to check.
 */
export async function makeEveryTask(
  h: Harness,
  prefix: string,
  options: { tag: string; fileServer: string; davMount?: string },
): Promise<EveryTask> {
  const { tag } = options;
  const dir = `/local/${tag}`;
  const replies: EveryTask['replies'] = [];
  const ids: Record<string, string[]> = {};
  const passwords = new Map<string, string>();
  const add = (type: string, id: string) => {
    ids[type] = [...(ids[type] ?? []), id];
  };
  const post = async (url: string, body: unknown) => {
    const res = await h.json<Record<string, unknown>>('POST', prefix + url, { token: h.adminToken, body });
    assert.equal(res.code, 200, `${url}: ${res.message}`);
    return res.data;
  };
  const finish = (type: string, id: string) =>
    waitFor(
      async () => {
        const res = await h.json<unknown>('POST', `/api/task/${type}/info?tid=${id}`, {
          token: h.adminToken,
        });
        // The root answers in either flavour: an array of one (seed) or the task, state 0–9 (current).
        const data = res.data as { state: string | number } | { state: string | number }[] | null;
        const task = Array.isArray(data) ? data[0] : data;
        if (!task) return undefined;
        const done = typeof task.state === 'number' ? [2, 4, 7].includes(task.state) : isFinished(task.state);
        return done ? task : undefined;
      },
      30_000,
      `${type} ${id}`,
    );
  const run = async (type: string, label: string, tasks: TaskReply[]) => {
    assert.ok(tasks.length > 0, label);
    replies.push({ label, tasks });
    for (const t of tasks) add(type, t.id);
    for (const t of tasks) await finish(type, t.id);
  };

  const put = await h.call('PUT', `${prefix}/api/fs/put`, {
    token: h.adminToken,
    body: Buffer.from('uploaded'),
    headers: { 'file-path': encodeURIComponent(`${dir}/up.txt`), 'as-task': 'true' },
  });
  const putReply = JSON.parse(put.body) as { code: number; message: string; data: { task: TaskReply } };
  assert.equal(putReply.code, 200, putReply.message);
  await run('upload', 'PUT /api/fs/put', [putReply.data.task]);

  const copy = await post('/api/fs/copy', { src_dir: dir, dst_dir: `${dir}/copies`, names: ['up.txt'] });
  await run('copy', 'POST /api/fs/copy', copy.tasks as TaskReply[]);
  const move = await post('/api/fs/move', {
    src_dir: `${dir}/copies`,
    dst_dir: `${dir}/moved`,
    names: ['up.txt'],
  });
  await run('move', 'POST /api/fs/move', move.tasks as TaskReply[]);
  const remove = await post('/api/fs/remove', { dir: `${dir}/moved`, names: ['up.txt'] });
  await run('delete', 'POST /api/fs/remove', remove.tasks as TaskReply[]);

  const url = `${options.fileServer}/files/hello.bin?from=${tag}`;
  const offline = await post('/api/fs/add_offline_download', { urls: [url], path: dir, tool: 'SimpleHttp' });
  await run('offline_download', 'POST /api/fs/add_offline_download', offline.tasks as TaskReply[]);
  for (const id of ids.offline_download ?? []) {
    add('offline_download_transfer', `${id}-t0`);
    await finish('offline_download_transfer', `${id}-t0`);
  }

  const zip = new ZipWriter(new Uint8ArrayWriter());
  await zip.add('inside.txt', new TextReader('zipped'));
  await mkdir(join(h.dataDir, 'files', tag), { recursive: true });
  await writeFile(join(h.dataDir, 'files', tag, 'a.zip'), await zip.close());
  const targets = [`${dir}/out`, ...(options.davMount ? [`${options.davMount}/${tag}`] : [])];
  for (const [i, dst] of targets.entries()) {
    const password = i === 0 ? '' : 'p@ss w0rd';
    const reply = await post('/api/fs/archive/decompress', {
      src_dir: dir,
      dst_dir: dst,
      name: ['a.zip'],
      archive_pass: password,
    });
    const tasks = reply.tasks as TaskReply[];
    for (const t of tasks) passwords.set(t.id, password);
    await run('decompress', 'POST /api/fs/archive/decompress', tasks);
    if (i > 0) {
      for (const t of tasks) {
        add('decompress_upload', `${t.id}-upload`);
        await finish('decompress_upload', `${t.id}-upload`);
      }
    }
  }

  // Every task read back through the task API, both prefixes an old script may use.
  for (const [type, list] of Object.entries(ids)) {
    for (const id of list) {
      const info = await h.json<unknown>('POST', `${prefix}/api/task/${type}/info?tid=${id}`, {
        token: h.adminToken,
      });
      assert.equal(info.code, 200, info.message);
      const data = info.data as TaskReply | TaskReply[];
      replies.push({ label: `POST ${type}/info`, tasks: Array.isArray(data) ? data : [data] });
    }
    for (const query of ['', '?page=1&per_page=50']) {
      for (const base of ['/api/task', '/api/admin/task']) {
        const done = await h.json<TaskReply[]>('GET', `${prefix}${base}/${type}/done${query}`, {
          token: h.adminToken,
        });
        assert.equal(done.code, 200, done.message);
        replies.push({ label: `GET ${base}/${type}/done${query}`, tasks: done.data });
      }
    }
  }
  return { replies, ids, url, passwords };
}
