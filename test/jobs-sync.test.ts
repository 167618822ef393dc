import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, rm, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from './helpers/harness.ts';
import { mountWebDav, type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';
import { mountS3, type S3Server, startS3Server } from './helpers/s3-server.ts';

/**
 * Sync jobs between real storages: Local → S3 (s3rver) and WebDAV (`rclone serve webdav`) →
 * Local. A tree gets added, changed (size, and same size with a newer time), deleted and
 * excluded files; `plan` lists exactly the changes, the run makes the destination's files
 * byte-identical to the source's, and excluded files on either side stay as they were.
 */

interface Side {
  /** Write a source file (relative to the job's source folder) on the source's disk. */
  write(rel: string, data: string, mtimeMs?: number): Promise<void>;
  remove(rel: string): Promise<void>;
}

interface Job {
  id: string;
}

interface RunRow {
  task_id: string;
  state: string;
  copied_files: number;
  deleted_files: number;
  skipped_files: number;
  failed_files: number;
  bytes: number;
  error: string;
}

async function writeAt(root: string, rel: string, data: string, mtimeMs?: number): Promise<void> {
  const path = join(root, rel);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
  if (mtimeMs !== undefined) await utimes(path, mtimeMs / 1000, mtimeMs / 1000);
}

/** SHA-256 of every file below the virtual folder `dir`, read through ferry's own mounts. */
async function hashes(h: Harness, dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const r = h.core.mounts.resolve(dir);
  const walk = async (rel: string) => {
    for (const e of await r.driver.list(rel === '/' ? r.path : `${r.path}${rel}`)) {
      const childRel = `${rel === '/' ? '' : rel}/${e.name}`;
      if (e.isDir) await walk(childRel);
      else {
        const hash = createHash('sha256');
        for await (const chunk of await r.driver.read(`${r.path}${childRel}`)) hash.update(chunk as Buffer);
        out.set(childRel, hash.digest('hex'));
      }
    }
  };
  await walk('/');
  return out;
}

async function runJob(h: Harness, id: string): Promise<RunRow> {
  const run = await h.json<{ task: { id: string; type: string } }>('POST', `/api/job/run?id=${id}`, {
    token: h.adminToken,
  });
  assert.equal(run.code, 200, run.message);
  const task = await h.finished(run.data.task.type, run.data.task.id, 30_000);
  const runs = await h.json<RunRow[]>('GET', `/api/job/runs?id=${id}`, { token: h.adminToken });
  const row = runs.data.find((r) => r.task_id === task.id);
  assert.ok(row, 'the run is listed');
  return row;
}

/** The scenario shared by both pairs of storages. */
async function syncScenario(h: Harness, src: Side, srcDir: string, dstDir: string): Promise<void> {
  const old = Date.now() - 3600_000;
  await src.write('a.txt', 'alpha', old);
  await src.write('same.txt', 'unchanged', old);
  await src.write('dir/b.txt', 'bravo', old);
  await src.write('dir/sub/c.bin', 'charlie-1', old);
  await src.write('cache/x.tmp', 'excluded by folder', old);
  await src.write('notes.log', 'excluded by name', old);

  const created = await h.json<Job>('POST', '/api/job/create', {
    token: h.adminToken,
    body: { name: 'mirror', mode: 'sync', src_dir: srcDir, dst_dir: dstDir, exclude: ['cache/**', '*.log'] },
  });
  assert.equal(created.code, 200, created.message);
  const id = created.data.id;

  const first = await runJob(h, id);
  assert.equal(first.state, 'succeeded', first.error);
  assert.equal(first.copied_files, 4);
  assert.deepEqual(
    [...(await hashes(h, dstDir)).keys()].sort(),
    ['/a.txt', '/dir/b.txt', '/dir/sub/c.bin', '/same.txt'],
    'excluded files are not copied',
  );

  // Changes: one added, one grown, one of the same size but newer, one deleted; an excluded file
  // appears at the destination and must stay. S3 and WebDAV keep whole seconds, and ferry allows
  // a second of slack: the same-size change comes more than both after the first copy.
  await new Promise((r) => setTimeout(r, 2100));
  await src.write('new.txt', 'new file');
  await src.write('dir/b.txt', 'bravo, longer now', old);
  await src.write('dir/sub/c.bin', 'charlie-2');
  await src.remove('a.txt');
  const dstRoot = h.core.mounts.resolve(dstDir);
  await dstRoot.driver.mkdir(`${dstRoot.path}/cache`);
  const keep = async (rel: string, text: string) => {
    const { Readable } = await import('node:stream');
    await dstRoot.driver.write(`${dstRoot.path}${rel}`, Readable.from([Buffer.from(text)]), {
      overwrite: true,
    });
  };
  await keep('/cache/kept.tmp', 'destination only, excluded');
  await keep('/kept.log', 'destination only, excluded');
  // A folder only at the destination goes with its files. (s3rver lists a folder that holds only
  // folders under no name in its parent, which S3 itself does not do: `gone` holds a file too.)
  await keep('/gone/y.txt', 'not in the source');
  await keep('/gone/deep/z.txt', 'not in the source');

  const plan = await h.json<{ copy: string[]; delete: string[]; skip: number }>(
    'POST',
    `/api/job/plan?id=${id}`,
    {
      token: h.adminToken,
    },
  );
  assert.equal(plan.code, 200, plan.message);
  assert.deepEqual(
    { copy: [...plan.data.copy].sort(), delete: [...plan.data.delete].sort(), skip: plan.data.skip },
    {
      copy: ['/dir/b.txt', '/dir/sub/c.bin', '/new.txt'],
      delete: ['/a.txt', '/gone/deep/z.txt', '/gone/y.txt'],
      skip: 1,
    },
  );
  // The plan changed nothing.
  assert.ok((await hashes(h, dstDir)).has('/a.txt'));

  const second = await runJob(h, id);
  assert.equal(second.state, 'succeeded', second.error);
  assert.deepEqual(
    [second.copied_files, second.deleted_files, second.skipped_files, second.failed_files],
    [3, 3, 1, 0],
  );
  assert.equal(second.bytes, 'new file'.length + 'bravo, longer now'.length + 'charlie-2'.length);

  const srcHashes = await hashes(h, srcDir);
  for (const rel of ['/cache/x.tmp', '/notes.log']) srcHashes.delete(rel);
  const dstHashes = await hashes(h, dstDir);
  assert.equal(dstHashes.get('/cache/kept.tmp') !== undefined, true, 'excluded destination file kept');
  assert.equal(dstHashes.get('/kept.log') !== undefined, true, 'excluded destination file kept');
  dstHashes.delete('/cache/kept.tmp');
  dstHashes.delete('/kept.log');
  assert.deepEqual(dstHashes, srcHashes, 'the destination equals the source');
  assert.equal(
    (await dstRoot.driver.stat(`${dstRoot.path}/gone`)) === null,
    true,
    'the emptied folder is gone',
  );

  // Nothing left to do: a third plan is empty.
  const again = await h.json<{ copy: string[]; delete: string[]; skip: number }>(
    'POST',
    `/api/job/plan?id=${id}`,
    {
      token: h.adminToken,
    },
  );
  assert.deepEqual(again.data, { copy: [], delete: [], skip: 4 });
}

describe('sync jobs between real storages', () => {
  let h: Harness;
  let s3: S3Server;
  let dav: RcloneServer | undefined;

  before(async () => {
    h = await startHarness();
    s3 = await startS3Server();
    await mountS3(h, s3, '/', '/s3');
    if (rcloneAvailable()) {
      dav = await startRclone('webdav');
      await mountWebDav(h, dav);
    }
  });
  after(async () => {
    await h.close();
    await s3.close();
    await dav?.close();
  });

  it('Local → S3: plan lists exactly the changes, the run makes the destination identical', async () => {
    const root = join(h.dataDir, 'files', 'l2s');
    await syncScenario(
      h,
      { write: (rel, data, mtime) => writeAt(root, rel, data, mtime), remove: (rel) => rm(join(root, rel)) },
      '/local/l2s',
      '/s3/mirror',
    );
  });

  it('WebDAV → Local: plan lists exactly the changes, the run makes the destination identical', async (t) => {
    if (!dav) return t.skip('rclone is not installed');
    // Written through ferry's WebDAV mount, not on rclone's disk: rclone serves from a cache of
    // listings that would not see a change made behind its back. The server stamps the times.
    const r = h.core.mounts.resolve('/dav/tree');
    const { Readable } = await import('node:stream');
    await syncScenario(
      h,
      {
        write: (rel, data) =>
          r.driver.write(`${r.path}/${rel}`, Readable.from([Buffer.from(data)]), { overwrite: true }),
        remove: (rel) => r.driver.remove(`${r.path}/${rel}`),
      },
      '/dav/tree',
      '/local/from-dav',
    );
  });
});
