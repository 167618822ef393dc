import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Driver } from '../src/storage/driver.ts';
import { joinPath } from '../src/storage/paths.ts';
import { type Harness, isFinished, startHarness, waitFor } from './helpers/harness.ts';
import { type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';
import { type S3Server, s3Addition, startS3Server } from './helpers/s3-server.ts';
import { diffSnapshots, expectedSnapshot, makeTree, writeRandomFile } from './helpers/tree.ts';

/**
 * Copy and move between every ordered pair of {Local, S3, WebDav, SFTP}, through the API, each
 * backend a real server on loopback (s3rver, `rclone serve webdav|sftp`). The tree is 2,000 files
 * in nested folders (with empty ones) plus one 200 MB file and one of 12 MiB (S3 multipart, but
 * under the size fetched as ranges); every byte is checked by SHA-256 through the destination's
 * own driver.
 *
 * Size: the full size by default (about 8 minutes on a 2-core machine, most of it
 * waiting on s3rver: the moves that involve S3 take three times as long as the others); `FERRY_TEST_TREE_FILES` and `FERRY_TEST_BIG_MB` make it smaller for a
 * quick run while working on a driver.
 *
 * The trees chain: Local's tree is copied to the three others, each copy is copied on from there
 * to the remaining backends, and each of those copies is then moved once more. So every pair is
 * exercised as a copy and as a move, and every source is something ferry wrote itself.
 */

const TREE_FILES = Number(process.env.FERRY_TEST_TREE_FILES ?? 2000);
const BIG_BYTES = Number(process.env.FERRY_TEST_BIG_MB ?? 200) * 1024 * 1024;
/** A file between one S3 part (5 MiB) and the size fetched as ranges (64 MiB): three parts. */
const MID_BYTES = 12 * 1024 * 1024 + 5;
/** The tree's files, with big.bin and mid.bin. */
const ALL_FILES = TREE_FILES + 2;

interface Backend {
  name: string;
  mount: string;
}

interface TaskInfo {
  id: string;
  state: string;
  error: string;
  progress: number;
  total_bytes: number;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
  failed_files: number;
}

/** Files hashed at once while checking a tree: remote reads are mostly waiting on the server. */
const CHECK_CONCURRENCY = 8;

/** Every entry below `path` on `driver`: relative path → SHA-256 for files, `'dir'` for folders. */
async function snapshotDriver(driver: Driver, path: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const files: { rel: string; path: string }[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await driver.list(dir)) {
      const rel = `${prefix}/${entry.name}`;
      if (!entry.isDir) files.push({ rel, path: joinPath(dir, entry.name) });
      else {
        out.set(rel, 'dir');
        await walk(joinPath(dir, entry.name), rel);
      }
    }
  };
  await walk(path, '');
  let next = 0;
  const hashFiles = async () => {
    for (let file = files[next++]; file; file = files[next++]) {
      const hash = createHash('sha256');
      for await (const chunk of await driver.read(file.path)) hash.update(chunk as Buffer);
      out.set(file.rel, hash.digest('hex'));
    }
  };
  await Promise.all(Array.from({ length: CHECK_CONCURRENCY }, hashFiles));
  return out;
}

const enabled = rcloneAvailable();

describe('copy and move between every pair of backends', { skip: !enabled }, () => {
  let h: Harness;
  let s3: S3Server;
  let dav: RcloneServer;
  let sftp: RcloneServer;
  let expected: Map<string, string>;
  let totalBytes = 0;
  const backends: Backend[] = [
    { name: 'Local', mount: '/local' },
    { name: 'S3', mount: '/s3' },
    { name: 'WebDav', mount: '/dav' },
    { name: 'SFTP', mount: '/sftp' },
  ];

  const mount = async (mount_path: string, driver: string, addition: Record<string, unknown>) => {
    const res = await h.json('POST', '/api/admin/storage/create', {
      token: h.adminToken,
      body: { mount_path, driver, addition: JSON.stringify(addition) },
    });
    assert.equal(res.code, 200, `mount ${driver}: ${res.message}`);
  };

  const info = async (type: string, id: string) =>
    (await h.json<TaskInfo[]>('POST', `/api/task/${type}/info?tid=${id}`, { token: h.adminToken })).data[0];

  const finished = (type: string, id: string) =>
    waitFor(
      async () => {
        const t = await info(type, id);
        return t && isFinished(t.state) ? t : undefined;
      },
      600_000,
      `${type} task ${id}`,
      // Up to 12 tasks at once: polling each every 25 ms would take a core from the transfers.
      500,
    );

  /** Start one task per item at once (so the pairs run side by side), wait for all. */
  const runAll = async (type: 'copy' | 'move', items: { from: string; toDir: string; name: string }[]) => {
    const ids = await Promise.all(
      items.map(async ({ from, toDir, name }) => {
        const res = await h.json<{ tasks: { id: string }[] }>('POST', `/api/fs/${type}`, {
          token: h.adminToken,
          body: { src_dir: from, dst_dir: toDir, names: [name] },
        });
        assert.equal(res.code, 200, `${type} ${from}/${name} → ${toDir}: ${res.message}`);
        return res.data.tasks[0]?.id ?? '';
      }),
    );
    const t0 = Date.now();
    const tasks = await Promise.all(
      ids.map(async (id, i) => {
        const t = await finished(type, id);
        const { from, toDir } = items[i] as (typeof items)[number];
        console.log(`# ${type} ${from} → ${toDir}: ${t.state} after ${Date.now() - t0} ms`);
        return t;
      }),
    );
    console.log(`# ${items.length} ${type} tasks: ${Date.now() - t0} ms`);
    return tasks;
  };

  /** Check every pair's outcome side by side (the checks mostly wait on the servers). */
  const checkAll = async <T>(items: readonly T[], check: (item: T, index: number) => Promise<void>) => {
    const t0 = Date.now();
    await Promise.all(items.map(check));
    console.log(`# checks of ${items.length} trees: ${Date.now() - t0} ms`);
  };

  const assertTaskComplete = (t: TaskInfo, what: string) => {
    assert.equal(t.state, 'succeeded', `${what}: ${t.error}`);
    assert.equal(t.total_files, ALL_FILES, `${what}: total_files`);
    assert.equal(t.processed_files, ALL_FILES, `${what}: processed_files`);
    assert.equal(t.failed_files, 0, `${what}: failed_files`);
    assert.equal(t.total_bytes, totalBytes, `${what}: total_bytes`);
    assert.equal(t.processed_bytes, totalBytes, `${what}: processed_bytes`);
    assert.equal(t.progress, 100, `${what}: progress`);
  };

  const assertTree = async (virtualPath: string, what: string) => {
    const at = h.core.mounts.resolve(virtualPath);
    const diffs = diffSnapshots(await snapshotDriver(at.driver, at.path), expected);
    assert.deepEqual(diffs.slice(0, 10), [], `${what}: ${diffs.length} differences`);
  };

  const assertGone = async (virtualPath: string, what: string) => {
    const at = h.core.mounts.resolve(virtualPath);
    assert.equal(await at.driver.stat(at.path), null, `${what}: the source is gone`);
  };

  before(async () => {
    // s3rver in its own process: in this one, every S3 request's work came out of the event loop
    // that ferry (the server under test) runs on.
    [s3, dav, sftp] = await Promise.all([startS3Server(), startRclone('webdav'), startRclone('sftp')]);
    h = await startHarness();
    await mount('/s3', 'S3', s3Addition(s3, '/pairs'));
    await mount('/dav', 'WebDav', {
      address: dav.address,
      username: dav.username,
      password: dav.password,
      root_folder_path: '/',
      vendor: 'other',
    });
    await mount('/sftp', 'SFTP', {
      address: sftp.address,
      username: sftp.username,
      password: sftp.password,
      root_folder_path: '/',
    });
    const root = join(h.dataDir, 'files', 'tree');
    const spec = await makeTree(root, TREE_FILES);
    expected = expectedSnapshot(spec);
    expected.set('/big.bin', await writeRandomFile(join(root, 'big.bin'), BIG_BYTES));
    expected.set('/mid.bin', await writeRandomFile(join(root, 'mid.bin'), MID_BYTES));
    totalBytes = spec.totalBytes + BIG_BYTES + MID_BYTES;
  });

  after(async () => {
    await h?.close();
    await Promise.all([s3?.close(), dav?.close(), sftp?.close()]);
  });

  it('never returns a password or secret key of any mount, and keeps them when a client saves it back', async () => {
    type Storage = { id: number; mount_path: string; driver: string; addition: string; status: string };
    const list = await h.json<{ content: Storage[] }>('GET', '/api/admin/storage/list', {
      token: h.adminToken,
    });
    const text = JSON.stringify(list);
    for (const secret of [dav.password, sftp.password]) assert.ok(!text.includes(secret), 'password leaked');
    for (const m of list.data.content) {
      const addition = JSON.parse(m.addition) as Record<string, unknown>;
      for (const key of ['password', 'secret_access_key', 'private_key', 'passphrase', 'session_token'])
        assert.ok(!addition[key], `${m.driver} returns ${key}`);
    }
    // An edit form sends back what the list gave it (secrets blank): the stored ones stay, so the
    // mount still logs in (rclone checks the password).
    for (const m of list.data.content.filter((s) => s.driver === 'WebDav' || s.driver === 'SFTP')) {
      const res = await h.json('POST', '/api/admin/storage/update', { token: h.adminToken, body: m });
      assert.equal(res.code, 200, `${m.driver} update: ${res.message}`);
    }
    const saved = await h.json<{ content: Storage[] }>('GET', '/api/admin/storage/list', {
      token: h.adminToken,
    });
    for (const m of saved.data.content) assert.equal(m.status, 'work', `${m.mount_path}: ${m.status}`);
    // A wrong password is refused at once, with a clear message that does not repeat it.
    const davMount = saved.data.content.find((s) => s.driver === 'WebDav') as Storage;
    const wrong = await h.json('POST', '/api/admin/storage/update', {
      token: h.adminToken,
      body: {
        ...davMount,
        addition: JSON.stringify({ ...JSON.parse(davMount.addition), password: 'not-the-password' }),
      },
    });
    assert.notEqual(wrong.code, 200);
    assert.ok(!wrong.message.includes('not-the-password'), wrong.message);
  });

  it('copies Local → each remote backend: every byte identical, counts and progress right', async () => {
    const remotes = backends.filter((b) => b.name !== 'Local');
    const tasks = await runAll(
      'copy',
      remotes.map((b) => ({ from: '/local', toDir: `${b.mount}/from-Local`, name: 'tree' })),
    );
    await checkAll(remotes, async (b, i) => {
      assertTaskComplete(tasks[i] as TaskInfo, `Local → ${b.name}`);
      await assertTree(`${b.mount}/from-Local/tree`, `Local → ${b.name}`);
    });
  });

  it('copies between every ordered pair of remote backends, and from each back to Local', async () => {
    const pairs = backends
      .filter((a) => a.name !== 'Local')
      .flatMap((a) => backends.filter((b) => b !== a).map((b) => [a, b] as const));
    const tasks = await runAll(
      'copy',
      pairs.map(([a, b]) => ({
        from: `${a.mount}/from-Local`,
        toDir: `${b.mount}/from-${a.name}`,
        name: 'tree',
      })),
    );
    await checkAll(pairs, async ([a, b], i) => {
      assertTaskComplete(tasks[i] as TaskInfo, `${a.name} → ${b.name}`);
      await assertTree(`${b.mount}/from-${a.name}/tree`, `${a.name} → ${b.name}`);
    });
  });

  it('keeps a tree identical through a copy within one remote mount (the backend’s own copy where it has one)', async () => {
    const remotes = backends.filter((b) => b.name !== 'Local');
    const tasks = await runAll(
      'copy',
      remotes.map((b) => ({ from: `${b.mount}/from-Local`, toDir: `${b.mount}/same`, name: 'tree' })),
    );
    await checkAll(remotes, async (b, i) => {
      assertTaskComplete(tasks[i] as TaskInfo, `${b.name} → ${b.name}`);
      await assertTree(`${b.mount}/same/tree`, `${b.name} → ${b.name}`);
    });
  });

  it('moves between every ordered pair: destination identical, source gone', async () => {
    // Every backend X now holds from-Y/tree for each Y ≠ X; the move X → Y takes that one.
    const pairs = backends.flatMap((a) => backends.filter((b) => b !== a).map((b) => [a, b] as const));
    const tasks = await runAll(
      'move',
      pairs.map(([a, b]) => ({
        from: `${a.mount}/from-${b.name}`,
        toDir: `${b.mount}/moved-${a.name}`,
        name: 'tree',
      })),
    );
    await checkAll(pairs, async ([a, b], i) => {
      assertTaskComplete(tasks[i] as TaskInfo, `move ${a.name} → ${b.name}`);
      await assertTree(`${b.mount}/moved-${a.name}/tree`, `move ${a.name} → ${b.name}`);
      await assertGone(`${a.mount}/from-${b.name}/tree`, `move ${a.name} → ${b.name}`);
    });
  });

  it('deletes a whole tree on every backend as one task: counts right, nothing left', async () => {
    // Every backend B holds moved-A/tree for each A ≠ B; one of them goes, all four at once.
    const targets = backends.map((b) => ({
      dir: `${b.mount}/moved-${backends.find((a) => a !== b)?.name}`,
      name: b.name,
    }));
    const ids = await Promise.all(
      targets.map(async ({ dir, name }) => {
        const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/remove', {
          token: h.adminToken,
          body: { dir, names: ['tree'] },
        });
        assert.equal(res.code, 200, `remove on ${name}: ${res.message}`);
        return res.data.tasks[0]?.id ?? '';
      }),
    );
    await checkAll(targets, async ({ dir, name }, i) => {
      assertTaskComplete(await finished('delete', ids[i] as string), `delete on ${name}`);
      await assertGone(`${dir}/tree`, `delete on ${name}`);
    });
  });

  it('refuses paths that climb out of any mount', async () => {
    for (const b of backends) {
      for (const path of [`${b.mount}/../../etc`, `${b.mount}/a/../../..`, `${b.mount}/%2e%2e/x`]) {
        const res = await h.json('POST', '/api/fs/copy', {
          token: h.adminToken,
          body: { src_dir: path, dst_dir: `${b.mount}/x`, names: ['passwd'] },
        });
        assert.notEqual(res.code, 200, `${path} accepted`);
      }
      const listed = await h.json('POST', '/api/fs/list', {
        token: h.adminToken,
        body: { path: `${b.mount}/../../../etc` },
      });
      assert.notEqual(listed.code, 200, `list above ${b.mount}`);
    }
  });
});
