import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { privileged, setImmutable } from './helpers/privileged.ts';
import {
  diffSnapshots,
  exists,
  expectedSnapshot,
  FERRY_TEMP_PREFIX,
  findTempFiles,
  identity,
  makeTree,
  sha256,
  sha256File,
  snapshotTree,
  type TreeSpec,
  writeRandomFile,
} from './helpers/tree.ts';

/**
 * Uploads, copies, moves, cancels, retries and deletes as a user sees them through AList's file and
 * task API: real files on disk, compared by SHA-256.
 */

interface TaskView {
  id: string;
  name: string;
  type: string;
  state: string;
  status: string;
  progress: number;
  total_bytes: number;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
  failed_files: number;
  error: string;
  failures?: { path: string; error: string }[];
}

const DONE = new Set(['succeeded', 'canceled', 'failed']);
const MiB = 1024 * 1024;
const TREE_FILES = 2000;

describe('transfers through the AList file API', () => {
  let h: Harness;
  /** Root folder of the `/local` mount. */
  let files: string;
  /** Root folder of the second Local mount, `/other`. */
  let otherRoot: string;
  /** The 2,000-file tree at /local/tree. */
  let tree: TreeSpec;

  const info = async (type: string, id: string): Promise<TaskView> => {
    const res = await h.json<TaskView[]>('POST', `/api/task/${type}/info?tid=${encodeURIComponent(id)}`, {
      token: h.adminToken,
    });
    assert.equal(res.code, 200, `info ${type} ${id}: ${res.message}`);
    const task = res.data[0];
    assert.ok(task, `info ${type} ${id} returned no task`);
    return task;
  };
  const finished = (type: string, id: string, timeoutMs = 60_000) =>
    waitFor(
      async () => {
        const t = await info(type, id);
        return DONE.has(t.state) ? t : undefined;
      },
      timeoutMs,
      `${type} task ${id} to finish`,
    );
  const list = async (type: string, which: 'done' | 'undone') => {
    const res = await h.json<TaskView[]>('GET', `/api/task/${type}/${which}`, { token: h.adminToken });
    assert.equal(res.code, 200, res.message);
    return res.data;
  };
  const allTasks = async (type: string) => [...(await list(type, 'undone')), ...(await list(type, 'done'))];
  const submit = async (kind: 'copy' | 'move', body: Record<string, unknown>) => {
    const res = await h.json<{ tasks: TaskView[] }>('POST', `/api/fs/${kind}`, { token: h.adminToken, body });
    assert.equal(res.code, 200, `fs/${kind}: ${res.message}`);
    return res.data.tasks;
  };
  const noTemps = async (dir: string) => {
    const temps = await findTempFiles(dir);
    const sizes = await Promise.all(
      temps.map((t) =>
        stat(t).then(
          (s) => s.size,
          () => -1,
        ),
      ),
    );
    assert.deepEqual(temps, [], `temp files in ${dir} (sizes ${sizes.join(', ')})`);
  };

  before(async () => {
    h = await startHarness();
    files = join(h.dataDir, 'files');
    otherRoot = await mkdtemp(join(tmpdir(), 'ferry-other-'));
    const t = Date.now();
    tree = await makeTree(join(files, 'tree'), TREE_FILES);
    console.log(`# made a ${TREE_FILES}-file tree (${tree.totalBytes} bytes) in ${Date.now() - t} ms`);
  });
  after(async () => {
    await h?.close();
    if (otherRoot) await rm(otherRoot, { recursive: true, force: true });
  });

  it('uploads 50 MB with PUT /api/fs/put as a task; the download and a Range request give the same bytes', async () => {
    const data = randomBytes(50 * MiB);
    const path = '/local/uploads/big upload ü #1.bin';
    const t0 = Date.now();
    const put = await h.putAsTask(path, data);
    assert.equal(put.code, 200, put.message);
    assert.equal(put.data.task.type, 'upload');
    const task = await finished('upload', put.data.task.id);
    console.log(`# 50 MB upload: reply + task done in ${Date.now() - t0} ms`);
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(task.progress, 100);
    assert.equal(task.total_bytes, 52_428_800);
    assert.equal(task.processed_bytes, 52_428_800);
    assert.equal(task.processed_files, 1);

    const onDisk = join(files, 'uploads', 'big upload ü #1.bin');
    assert.equal(await sha256File(onDisk), sha256(data));

    const url = `/d${encodeURI(path).replaceAll('#', '%23')}`;
    const whole = await h.call('GET', url, { token: h.adminToken });
    assert.equal(whole.statusCode, 200);
    assert.equal(whole.headers['content-length'], String(data.length));
    assert.equal(sha256(whole.rawPayload), sha256(data));

    const slice = await h.call('GET', url, {
      token: h.adminToken,
      headers: { range: 'bytes=1048576-3145727' },
    });
    assert.equal(slice.statusCode, 206);
    assert.equal(slice.headers['content-range'], `bytes 1048576-3145727/${data.length}`);
    assert.equal(slice.rawPayload.length, 2 * MiB);
    assert.ok(slice.rawPayload.equals(data.subarray(1048576, 3145728)), 'range body is the right slice');

    const tail = await h.call('GET', url, { token: h.adminToken, headers: { range: 'bytes=-1000' } });
    assert.equal(tail.statusCode, 206);
    assert.equal(
      tail.headers['content-range'],
      `bytes ${data.length - 1000}-${data.length - 1}/${data.length}`,
    );
    assert.ok(tail.rawPayload.equals(data.subarray(data.length - 1000)), 'suffix range is the file end');
    await noTemps(join(files, 'uploads'));
  });

  it('uploads a multipart form with PUT /api/fs/form', async () => {
    const data = randomBytes(300_000);
    const boundary = `----ferry${randomBytes(8).toString('hex')}`;
    const body = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="form.bin"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
      ),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await h.json<{ task: TaskView }>('PUT', '/api/fs/form', {
      token: h.adminToken,
      body,
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'file-path': encodeURIComponent('/local/uploads/form.bin'),
        'as-task': 'true',
      },
    });
    assert.equal(res.code, 200, res.message);
    const task = await finished('upload', res.data.task.id);
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(task.total_bytes, data.length);
    assert.equal(await sha256File(join(files, 'uploads', 'form.bin')), sha256(data));
  });

  it('an upload without As-Task answers only once the file is in place', async () => {
    const data = randomBytes(5 * MiB);
    const res = await h.json('PUT', '/api/fs/put', {
      token: h.adminToken,
      body: data,
      headers: {
        'file-path': encodeURIComponent('/local/uploads/sync.bin'),
        'content-type': 'application/octet-stream',
      },
    });
    assert.equal(res.code, 200, res.message);
    // No waiting: the reply itself promises the file is there.
    assert.equal(await sha256File(join(files, 'uploads', 'sync.bin')), sha256(data));
    const done = (await list('upload', 'done')).filter((t) => t.name.includes('sync.bin'));
    assert.equal(done.length, 1, 'one upload task for sync.bin, finished');
    assert.equal(done[0]?.state, 'succeeded');
    // `Overwrite: false` refuses an existing file before reading the body; the file is untouched.
    const refused = await h.json('PUT', '/api/fs/put', {
      token: h.adminToken,
      body: Buffer.from('other bytes'),
      headers: {
        'file-path': encodeURIComponent('/local/uploads/sync.bin'),
        overwrite: 'false',
        'content-type': 'application/octet-stream',
      },
    });
    assert.equal(refused.code, 403);
    assert.equal(await sha256File(join(files, 'uploads', 'sync.bin')), sha256(data));
  });

  it(`copies a ${TREE_FILES}-file tree as exactly one task, every file identical, empty folders kept`, async () => {
    const before = new Set((await allTasks('copy')).map((t) => t.id));
    const t0 = Date.now();
    const tasks = await submit('copy', { src_dir: '/local', dst_dir: '/local/copied', names: ['tree'] });
    assert.equal(tasks.length, 1, 'one task for the whole tree');
    const [created] = tasks;
    assert.ok(created);
    const task = await finished('copy', created.id, 120_000);
    console.log(`# copy of ${TREE_FILES} files: ${Date.now() - t0} ms`);
    assert.equal(task.state, 'succeeded', task.error);
    const added = (await allTasks('copy')).filter((t) => !before.has(t.id));
    assert.deepEqual(
      added.map((t) => t.id),
      [created.id],
      'the copy made exactly one task',
    );
    assert.equal(task.total_files, TREE_FILES);
    assert.equal(task.processed_files, TREE_FILES);
    assert.equal(task.failed_files, 0);
    assert.equal(task.total_bytes, tree.totalBytes);
    assert.equal(task.processed_bytes, tree.totalBytes);
    assert.equal(task.progress, 100);

    const dst = join(files, 'copied', 'tree');
    assert.deepEqual(diffSnapshots(await snapshotTree(dst), expectedSnapshot(tree)), []);
    for (const d of tree.emptyDirs)
      assert.deepEqual(await readdir(join(dst, d)), [], `${d} is an empty folder`);
    await noTemps(join(files, 'copied'));
    // The source is untouched.
    assert.deepEqual(diffSnapshots(await snapshotTree(join(files, 'tree')), expectedSnapshot(tree)), []);
  });

  it('moves the tree across two Local mounts: destination identical, source gone', async () => {
    const created = await h.json('POST', '/api/admin/storage/create', {
      token: h.adminToken,
      body: {
        mount_path: '/other',
        driver: 'Local',
        addition: JSON.stringify({ root_folder_path: otherRoot }),
      },
    });
    assert.equal(created.code, 200, created.message);
    // A fresh copy of the tree to move, made outside ferry.
    await cp(join(files, 'tree'), join(files, 'to-move'), { recursive: true });

    const t0 = Date.now();
    const tasks = await submit('move', { src_dir: '/local', dst_dir: '/other', names: ['to-move'] });
    assert.equal(tasks.length, 1, 'one task for the whole tree');
    const task = await finished('move', tasks[0]!.id, 120_000);
    console.log(`# move of ${TREE_FILES} files across mounts: ${Date.now() - t0} ms`);
    assert.equal(task.state, 'succeeded', task.error);
    assert.equal(task.total_files, TREE_FILES);
    assert.equal(task.processed_files, TREE_FILES);
    assert.equal(task.failed_files, 0);
    assert.equal(task.total_bytes, tree.totalBytes);
    assert.equal(task.progress, 100);

    assert.deepEqual(
      diffSnapshots(await snapshotTree(join(otherRoot, 'to-move')), expectedSnapshot(tree)),
      [],
    );
    assert.equal(await exists(join(files, 'to-move')), false, 'the source tree is gone');
    await noTemps(otherRoot);

    // The moved tree is visible through the API at its new place.
    const listed = await h.json<{ content: { name: string }[] }>('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/other/to-move' },
    });
    assert.equal(listed.code, 200, listed.message);
    assert.ok(listed.data.content.some((e) => e.name === 'empty-top'));
  });

  it('moves within one mount by renaming: instant, same inode', async () => {
    const dir = join(files, 'ren');
    await mkdir(join(dir, 'folder', 'inner'), { recursive: true });
    const bigSha = await writeRandomFile(join(dir, 'a.bin'), 64 * MiB);
    await writeFile(join(dir, 'folder', 'inner', 'x.txt'), 'hello');
    const fileId = await identity(join(dir, 'a.bin'));
    const innerId = await identity(join(dir, 'folder', 'inner', 'x.txt'));

    const t0 = Date.now();
    const tasks = await submit('move', {
      src_dir: '/local/ren',
      dst_dir: '/local/ren-dst',
      names: ['a.bin', 'folder'],
    });
    assert.equal(tasks.length, 2);
    for (const t of tasks) {
      const done = await finished('move', t.id);
      assert.equal(done.state, 'succeeded', done.error);
      assert.equal(done.progress, 100);
    }
    const elapsed = Date.now() - t0;
    console.log(`# same-mount move (64 MiB file + folder): ${elapsed} ms`);
    assert.ok(elapsed < 1000, `a rename should be instant, took ${elapsed} ms`);

    assert.equal((await identity(join(files, 'ren-dst', 'a.bin'))).ino, fileId.ino, 'renamed, not copied');
    assert.equal((await identity(join(files, 'ren-dst', 'folder', 'inner', 'x.txt'))).ino, innerId.ino);
    assert.equal(await sha256File(join(files, 'ren-dst', 'a.bin')), bigSha);
    assert.equal(await readFile(join(files, 'ren-dst', 'folder', 'inner', 'x.txt'), 'utf8'), 'hello');
    assert.deepEqual(await readdir(dir), [], 'nothing left at the source');
  });

  it('cancels a running copy of a 2 GiB file within a second, leaving nothing behind; a retry then succeeds', {
    timeout: 150_000,
  }, async () => {
    const srcDir = join(files, 'bigsrc');
    const dstDir = join(files, 'bigdst');
    await mkdir(srcDir, { recursive: true });
    const size = 2048 * MiB;
    let t = Date.now();
    const srcSha = await writeRandomFile(join(srcDir, 'huge.bin'), size);
    console.log(`# wrote 2 GiB of random data in ${Date.now() - t} ms`);
    try {
      const [created] = await submit('copy', {
        src_dir: '/local/bigsrc',
        dst_dir: '/local/bigdst',
        names: ['huge.bin'],
      });
      assert.ok(created);
      t = Date.now();
      const running = await waitFor(
        async () => {
          const v = await info('copy', created.id);
          assert.ok(!DONE.has(v.state), `the copy ended (${v.state}) before it could be canceled`);
          return v.state === 'running' && v.processed_bytes > 0 ? v : undefined;
        },
        30_000,
        'the copy to be running with bytes processed',
      );
      console.log(`# copy running with ${running.processed_bytes} bytes after ${Date.now() - t} ms`);
      assert.ok(running.processed_bytes < size, 'canceled part-way, not after the last byte');

      const cancelAt = Date.now();
      const cancel = await h.json('POST', `/api/task/copy/cancel?tid=${created.id}`, { token: h.adminToken });
      assert.equal(cancel.code, 200, cancel.message);
      const ended = await finished('copy', created.id, 10_000);
      const took = Date.now() - cancelAt;
      console.log(`# cancel → ${ended.state} in ${took} ms at ${ended.processed_bytes} bytes`);
      assert.equal(ended.state, 'canceled');
      assert.ok(took <= 1000, `canceled within 1 s (took ${took} ms)`);
      assert.ok(ended.processed_bytes < size, 'the bytes stopped moving before the end');

      // Nothing under the final name, no temp file left in the destination folder.
      assert.equal(await exists(join(dstDir, 'huge.bin')), false, 'no file under the final name');
      const leftovers = (await readdir(dstDir).catch(() => [] as string[])).filter((n) =>
        n.startsWith(FERRY_TEMP_PREFIX),
      );
      assert.deepEqual(leftovers, [], 'no temp file left');

      t = Date.now();
      const retry = await h.json('POST', `/api/task/copy/retry?tid=${created.id}`, { token: h.adminToken });
      assert.equal(retry.code, 200, retry.message);
      const again = await finished('copy', created.id, 120_000);
      console.log(`# retry copied 2 GiB in ${Date.now() - t} ms`);
      assert.equal(again.state, 'succeeded', again.error);
      assert.equal(again.progress, 100);
      assert.equal(again.processed_files, 1);
      assert.equal(await sha256File(join(dstDir, 'huge.bin')), srcSha);
      await noTemps(dstDir);
    } finally {
      await rm(srcDir, { recursive: true, force: true });
      await rm(dstDir, { recursive: true, force: true });
    }
  });

  it('a directory copy onto conflicting files fails listing each item; after clearing them a retry succeeds and skips identical files', async () => {
    const spec = await makeTree(join(files, 'r-src'), 60);
    const rels = [...spec.files.keys()];
    // Three conflicts: same size other bytes, other size, and an empty file where the source has data.
    const withData = rels.filter((r) => (spec.files.get(r)?.size ?? 0) > 10);
    const conflicts = [withData[3]!, withData[17]!, withData[40]!];
    const dstRoot = join(files, 'r-dst', 'r-src');
    const userBytes = new Map<string, Buffer>();
    for (const [i, rel] of conflicts.entries()) {
      const size = spec.files.get(rel)!.size;
      const data = i === 0 ? randomBytes(size) : i === 1 ? randomBytes(size + 123) : Buffer.alloc(0);
      await mkdir(join(dstRoot, rel, '..'), { recursive: true });
      await writeFile(join(dstRoot, rel), data);
      userBytes.set(rel, data);
    }

    const [created] = await submit('copy', { src_dir: '/local', dst_dir: '/local/r-dst', names: ['r-src'] });
    assert.ok(created);
    const failed = await finished('copy', created.id);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.total_files, 60);
    assert.equal(failed.failed_files, 3);
    assert.equal(failed.processed_files, 57);
    assert.ok(failed.error, 'the task says why it failed');
    const failures = failed.failures ?? [];
    assert.equal(failures.length, 3, `failures listed: ${JSON.stringify(failures)}`);
    for (const rel of conflicts) {
      const f = failures.find((x) => x.path === rel || x.path.endsWith(rel));
      assert.ok(f, `${rel} is listed among the failures ${JSON.stringify(failures)}`);
      assert.ok(f.error.length > 0);
    }
    // Without overwrite the user's files are left as they were.
    for (const [rel, data] of userBytes) assert.ok((await readFile(join(dstRoot, rel))).equals(data), rel);

    // Files the first attempt copied: their identity, to check the retry leaves them alone.
    const copiedBefore = new Map<string, { ino: number; mtimeNs: bigint }>();
    for (const rel of rels)
      if (!conflicts.includes(rel)) copiedBefore.set(rel, await identity(join(dstRoot, rel)));
    assert.equal(copiedBefore.size, 57);

    for (const rel of conflicts) await rm(join(dstRoot, rel));
    await new Promise((r) => setTimeout(r, 20)); // a rewrite now would show in the mtime
    const retry = await h.json('POST', `/api/task/copy/retry?tid=${created.id}`, { token: h.adminToken });
    assert.equal(retry.code, 200, retry.message);
    const again = await finished('copy', created.id);
    assert.equal(again.state, 'succeeded', again.error);
    assert.equal(again.total_files, 60);
    assert.equal(again.processed_files, 60);
    assert.equal(again.failed_files, 0);
    assert.equal(again.progress, 100);
    assert.deepEqual(diffSnapshots(await snapshotTree(dstRoot), expectedSnapshot(spec)), []);
    for (const [rel, id] of copiedBefore) {
      assert.deepEqual(await identity(join(dstRoot, rel)), id, `${rel} was skipped, not written again`);
    }
    await noTemps(join(files, 'r-dst'));
    // The failures of the first attempt are history: info of the succeeded task lists none.
    assert.deepEqual(again.failures ?? [], [], 'a succeeded retry lists no failures');
  });

  it('cancels a copy of 10,000 small files within a second: no temp file left, every file placed is whole; a retry completes it', async () => {
    // Five copies of the tree side by side, made outside ferry.
    const srcDir = join(files, 'many');
    const dstDir = join(files, 'many-dst');
    for (let i = 0; i < 5; i++) await cp(join(files, 'tree'), join(srcDir, `t${i}`), { recursive: true });
    const expected = await snapshotTree(srcDir);
    try {
      const [created] = await submit('copy', {
        src_dir: '/local',
        dst_dir: '/local/many-dst',
        names: ['many'],
      });
      assert.ok(created);
      await waitFor(
        async () => {
          const v = await info('copy', created.id);
          assert.ok(!DONE.has(v.state), `the copy ended (${v.state}) before it could be canceled`);
          return v.processed_files > 100 ? v : undefined;
        },
        30_000,
        'the first hundred files of the copy to be done',
      );
      const cancelAt = Date.now();
      const cancel = await h.json('POST', `/api/task/copy/cancel?tid=${created.id}`, { token: h.adminToken });
      assert.equal(cancel.code, 200, cancel.message);
      const ended = await finished('copy', created.id, 10_000);
      const took = Date.now() - cancelAt;
      console.log(
        `# cancel → ${ended.state} in ${took} ms, ${ended.processed_files} of ${ended.total_files} files done`,
      );
      assert.equal(ended.state, 'canceled');
      assert.ok(took <= 1000, `canceled within 1 s (took ${took} ms)`);
      assert.ok(ended.processed_files < 5 * TREE_FILES, 'stopped before the last file');
      await noTemps(dstDir);
      // What is there is whole: each file under its final name holds its source's bytes.
      const copied = await snapshotTree(join(dstDir, 'many'));
      for (const [rel, hash] of copied) assert.equal(hash, expected.get(rel), `${rel} as in the source`);

      const retry = await h.json('POST', `/api/task/copy/retry?tid=${created.id}`, { token: h.adminToken });
      assert.equal(retry.code, 200, retry.message);
      const again = await finished('copy', created.id, 120_000);
      assert.equal(again.state, 'succeeded', again.error);
      assert.equal(again.processed_files, 5 * TREE_FILES);
      assert.deepEqual(diffSnapshots(await snapshotTree(join(dstDir, 'many')), expected), []);
      await noTemps(dstDir);
    } finally {
      await rm(srcDir, { recursive: true, force: true });
      await rm(dstDir, { recursive: true, force: true });
    }
  });

  it('a delete that cannot remove one file removes the rest, lists that file, and keeps only its folders', async (t) => {
    // An immutable file (chattr +i) cannot be unlinked, even by root.
    const root = join(files, 'del-stuck');
    const spec = await makeTree(root, 40);
    const rels = [...spec.files.keys()].filter((r) => r.split('/').length > 2);
    const stuck = rels[5]!;
    if (!privileged(t, await setImmutable(join(root, stuck), true), 'chattr +i')) return;
    try {
      const res = await h.json<{ tasks: TaskView[] }>('POST', '/api/fs/remove', {
        token: h.adminToken,
        body: { dir: '/local', names: ['del-stuck'] },
      });
      // fs/remove waits for its delete tasks, so it answers with the failure itself.
      assert.equal(res.code, 400);
      assert.match(res.message, /1 item could not be deleted; first: .*permission denied/);
      const task = (await list('delete', 'done')).find((x) => x.name.includes('del-stuck'));
      assert.ok(task, 'the failed delete task is listed');
      const failed = await finished('delete', task.id);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error, /1 item could not be deleted/);
      assert.deepEqual(
        (failed.failures ?? []).map((f) => f.path),
        [stuck],
      );
      assert.equal(failed.total_files, spec.files.size);
      assert.equal(failed.processed_files, spec.files.size - 1);
      // Only the stuck file and the folders that hold it are left.
      const left = (await walkFiles(root)).map((p) => p.slice(root.length + 1));
      assert.deepEqual(left, [stuck.replace(/^\//, '')]);

      await setImmutable(join(root, stuck), false);
      const retry = await h.json('POST', `/api/task/delete/retry?tid=${task.id}`, { token: h.adminToken });
      assert.equal(retry.code, 200, retry.message);
      const again = await finished('delete', task.id);
      assert.equal(again.state, 'succeeded', again.error);
      assert.equal(await exists(root), false, 'the tree is gone');
    } finally {
      await setImmutable(join(root, stuck), false);
    }
  });

  it('fs/remove of a tree runs a delete task that removes it', async () => {
    const spec = await makeTree(join(files, 'del-tree'), 300);
    const res = await h.json<{ tasks: TaskView[] }>('POST', '/api/fs/remove', {
      token: h.adminToken,
      body: { dir: '/local', names: ['del-tree'] },
    });
    assert.equal(res.code, 200, res.message);
    assert.equal(res.data.tasks.length, 1);
    const [task] = res.data.tasks;
    assert.ok(task);
    assert.equal(task.type, 'delete');
    const done = await finished('delete', task.id);
    assert.equal(done.state, 'succeeded', done.error);
    assert.equal(done.total_files, spec.files.size);
    assert.equal(done.processed_files, spec.files.size);
    assert.equal(done.progress, 100);
    assert.equal(await exists(join(files, 'del-tree')), false, 'the tree is gone');
    assert.ok(
      (await list('delete', 'done')).some((t) => t.id === task.id),
      'the delete task is listed with the finished ones',
    );
  });
});

/** Every file below `dir` (not folders), sorted. */
async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (!entry.isDirectory()) out.push(join(entry.parentPath, entry.name));
  return out.sort();
}
