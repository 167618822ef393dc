import assert from 'node:assert/strict';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { mountS3, type S3Server, startS3Server } from './helpers/s3-server.ts';

/** Copies and moves between a Local mount and an S3 mount (s3rver), through the API. */

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function snapshot(dir: string, prefix = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = `${prefix}/${e.name}`;
    if (e.isDirectory()) for (const [k, v] of await snapshot(join(dir, e.name), rel)) out.set(k, v);
    else out.set(rel, sha(await readFile(join(dir, e.name))));
  }
  return out;
}

describe('Local ⇄ S3 through the task API', () => {
  let h: Harness;
  let s3: S3Server;
  let files: string;

  before(async () => {
    s3 = await startS3Server();
    h = await startHarness();
    files = join(h.dataDir, 'files');
    await mountS3(h, s3, '/mount');
  });
  after(async () => {
    await h.close();
    await s3.close();
  });

  it('never returns the secret key from the storage API', async () => {
    const list = await h.json<{ content: { addition: string; driver: string }[] }>(
      'GET',
      '/api/admin/storage/list',
      { token: h.adminToken },
    );
    const mount = list.data.content.find((m) => m.driver === 'S3');
    assert.ok(mount);
    const addition = JSON.parse(mount.addition);
    assert.equal(addition.secret_access_key, '');
    assert.equal(addition.access_key_id, s3.accessKeyId);
    assert.ok(
      !JSON.stringify(list).includes(`"${s3.secretAccessKey}"`) || s3.secretAccessKey === s3.accessKeyId,
    );
  });

  it('moves a folder out of S3 that is only a key prefix (no folder objects): succeeded, source gone', async () => {
    // Keys written straight to the bucket, as other tools write them: the folders exist only as
    // prefixes, and each vanishes with the last key moved out of it.
    const at = h.core.mounts.resolve('/s3');
    const written = new Map<string, Buffer>();
    for (const rel of ['/a.bin', '/deep/b.bin', '/deep/er/c.bin', '/deep/er/d.bin']) {
      const data = randomBytes(1000 + written.size);
      written.set(rel, data);
      await at.driver.write(`${at.path}/prefix-only${rel}`.replace('//', '/'), Readable.from([data]), {
        size: data.length,
      });
    }
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/move', {
      token: h.adminToken,
      body: { src_dir: '/s3', dst_dir: '/local/from-prefix', names: ['prefix-only'] },
    });
    assert.equal(res.code, 200, res.message);
    const done = await h.finished('move', res.data.tasks[0]?.id ?? '');
    assert.equal(done.state, 'succeeded', done.error);
    for (const [rel, data] of written)
      assert.ok((await readFile(join(files, 'from-prefix', 'prefix-only', rel))).equals(data), rel);
    assert.equal(
      await at.driver.stat(`${at.path}/prefix-only`.replace('//', '/')),
      null,
      'the source is gone',
    );
  });

  it('uploads into S3 with PUT /api/fs/put as tasks: empty, small and multipart files byte-identical', async () => {
    for (const size of [0, 1000, 11 * 1024 * 1024 + 7]) {
      const data = randomBytes(size);
      const path = `/s3/uploads/u-${size}.bin`;
      const put = await h.putAsTask(path, data);
      assert.equal(put.code, 200, put.message);
      const done = await h.finished('upload', put.data.task.id);
      assert.equal(done.state, 'succeeded', done.error);
      const at = h.core.mounts.resolve(path);
      const chunks: Buffer[] = [];
      for await (const c of await at.driver.read(at.path)) chunks.push(c as Buffer);
      assert.equal(sha(Buffer.concat(chunks)), sha(data), `${size} bytes`);
    }
  });

  it('copies a tree with a 20 MB file to S3 and moves it back byte-identical, the source gone only after', async () => {
    const src = join(files, 'tree');
    for (let i = 0; i < 60; i++) {
      await mkdir(join(src, `d${i % 4}`), { recursive: true });
      await writeFile(join(src, `d${i % 4}`, `f${i}.bin`), randomBytes(500 + i * 37));
    }
    await writeFile(join(src, 'big.bin'), randomBytes(20 * 1024 * 1024));
    const before = await snapshot(src);

    const up = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: '/local', dst_dir: '/s3/up', names: ['tree'] },
    });
    assert.equal(up.code, 200, up.message);
    const upDone = await h.finished('copy', up.data.tasks[0]?.id ?? '');
    assert.equal(upDone.state, 'succeeded', upDone.error);
    assert.equal(upDone.processed_files, 61);

    const listed = await h.json<{ content: { name: string; size: number }[] }>('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/s3/up/tree' },
    });
    assert.deepEqual(listed.data.content.map((e) => e.name).sort(), ['big.bin', 'd0', 'd1', 'd2', 'd3']);

    const down = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/move', {
      token: h.adminToken,
      body: { src_dir: '/s3/up', dst_dir: '/local/back', names: ['tree'] },
    });
    assert.equal(down.code, 200, down.message);
    const downDone = await h.finished('move', down.data.tasks[0]?.id ?? '');
    assert.equal(downDone.state, 'succeeded', downDone.error);
    assert.deepEqual(await snapshot(join(files, 'back', 'tree')), before);
    const gone = await h.json('POST', '/api/fs/list', { token: h.adminToken, body: { path: '/s3/up/tree' } });
    assert.equal(gone.code, 404, 'the S3 source is gone after the move');
    await rm(join(files, 'back'), { recursive: true });
    await stat(src);
  });

  it('moves a folder within S3 file by file: a cancel stops it at once with every file in one place or both, and the retry finishes', async () => {
    const src = join(files, 'moving');
    const count = 400;
    for (let i = 0; i < count; i++) {
      await mkdir(join(src, `d${i % 8}`), { recursive: true });
      await writeFile(join(src, `d${i % 8}`, `f${i}.bin`), randomBytes(100 + i));
    }
    const before = await snapshot(src);
    const up = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: '/local', dst_dir: '/s3/a', names: ['moving'] },
    });
    assert.equal((await h.finished('copy', up.data.tasks[0]?.id ?? '')).state, 'succeeded');

    const move = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/move', {
      token: h.adminToken,
      body: { src_dir: '/s3/a', dst_dir: '/s3/b', names: ['moving'] },
    });
    assert.equal(move.code, 200, move.message);
    const tid = move.data.tasks[0]?.id ?? '';
    // Progress counts files as they move (a rename behind one call would show none until done).
    const moving = await waitFor(async () => {
      const t = await h.task('move', tid);
      return t && t.processed_files >= 20 ? t : undefined;
    }, 60_000);
    assert.equal(moving.state, 'running');
    assert.equal(moving.total_files, count);
    const canceledAt = Date.now();
    assert.equal(
      (await h.json('POST', `/api/task/move/cancel?tid=${tid}`, { token: h.adminToken })).code,
      200,
    );
    const canceled = await h.finished('move', tid);
    assert.equal(canceled.state, 'canceled');
    assert.ok(Date.now() - canceledAt < 1500, `canceled after ${Date.now() - canceledAt} ms`);
    assert.ok(canceled.processed_files < count, 'stopped part-way');

    // Nothing lost: every file is at the source, the destination, or both, whole.
    const at = async (path: string) => {
      const r = h.core.mounts.resolve(path);
      if (!(await r.driver.stat(r.path))) return null;
      const chunks: Buffer[] = [];
      for await (const c of await r.driver.read(r.path)) chunks.push(c as Buffer);
      return sha(Buffer.concat(chunks));
    };
    for (const [rel, hash] of before) {
      const [inSrc, inDst] = [await at(`/s3/a/moving${rel}`), await at(`/s3/b/moving${rel}`)];
      assert.ok(inSrc === hash || inDst === hash, `${rel} lost`);
      for (const found of [inSrc, inDst]) assert.ok(found === null || found === hash, `${rel} damaged`);
    }

    assert.equal(
      (await h.json('POST', `/api/task/move/retry?tid=${tid}`, { token: h.adminToken })).code,
      200,
    );
    const done = await h.finished('move', tid);
    assert.equal(done.state, 'succeeded', done.error);
    for (const [rel, hash] of before) assert.equal(await at(`/s3/b/moving${rel}`), hash, rel);
    const gone = await h.json('POST', '/api/fs/list', {
      token: h.adminToken,
      body: { path: '/s3/a/moving' },
    });
    assert.equal(gone.code, 404, 'the source is gone');
  });
});

describe('memory of S3 uploads', () => {
  let h: Harness;
  let s3: S3Server;

  before(async () => {
    s3 = await startS3Server();
    h = await startHarness();
    await mountS3(h, s3);
  });
  after(async () => {
    await h?.close();
    await s3?.close();
  });

  // The test files are written through one reused buffer: a buffer per file would be garbage
  // that the collector may free in the middle of a measurement, and blur it. ferry runs in this
  // process (s3rver in its own), so ferry's ArrayBuffers are this process's.
  const chunk = Buffer.allocUnsafeSlow(1024 * 1024);
  /** A file of `size` random bytes at `path`; its sha256. */
  const writeRandom = async (path: string, size: number): Promise<string> => {
    const hash = createHash('sha256');
    const file = await open(path, 'w');
    try {
      for (let at = 0; at < size; ) {
        const part = chunk.subarray(0, Math.min(chunk.length, size - at));
        randomFillSync(part);
        hash.update(part);
        await file.write(part, 0, part.length, at);
        at += part.length;
      }
    } finally {
      await file.close();
    }
    return hash.digest('hex');
  };

  it('gives the memory of an upload’s part buffers back once no upload needs them', async () => {
    // A file of 5 MiB or more goes up four 5 MiB parts at a time, each read from the file into
    // a part buffer. Left to the garbage collector, those buffers would stay allocated until the
    // next full collection, minutes later on an idle server; ferry keeps them 2 s for a next
    // upload, then gives them back.
    const files = join(h.dataDir, 'files');
    await writeRandom(join(files, 'parts.bin'), 65 * 1024 * 1024);
    const before = process.memoryUsage().arrayBuffers;
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: '/local', dst_dir: '/s3/parts', names: ['parts.bin'] },
    });
    assert.equal(res.code, 200, res.message);
    const done = await h.finished('copy', res.data.tasks[0]?.id ?? '');
    assert.equal(done.state, 'succeeded', done.error);
    const mib = () => (process.memoryUsage().arrayBuffers - before) / 1024 / 1024;
    const atEnd = mib();
    await new Promise((r) => setTimeout(r, 3000));
    const held = mib();
    console.log(
      `# ArrayBuffers more than before: ${atEnd.toFixed(1)} MiB at the end, ${held.toFixed(1)} MiB 3 s later`,
    );
    assert.ok(held < 10, `${held.toFixed(1)} MiB of buffers still held 3 s after the upload`);
  });

  it('holds at most eight part buffers however many files go up at once', async () => {
    // Eight files of three parts each, copied as one task (eight files at a time): with a buffer
    // set per upload that would be 8 × 3 × 5 MiB = 120 MiB; the shared budget is 40 MiB.
    const dir = join(h.dataDir, 'files', 'mid');
    await mkdir(dir, { recursive: true });
    const hashes = new Map<string, string>();
    for (let i = 0; i < 8; i++)
      hashes.set(`f${i}.bin`, await writeRandom(join(dir, `f${i}.bin`), 12 * 1024 * 1024 + i));
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }, 5);
    try {
      const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token: h.adminToken,
        body: { src_dir: '/local', dst_dir: '/s3', names: ['mid'] },
      });
      assert.equal(res.code, 200, res.message);
      const done = await h.finished('copy', res.data.tasks[0]?.id ?? '');
      assert.equal(done.state, 'succeeded', done.error);
    } finally {
      clearInterval(sampler);
    }
    const peakMiB = peak / 1024 / 1024;
    console.log(`# ArrayBuffers during 8 × 12 MiB to S3: at most ${peakMiB.toFixed(1)} MiB more than before`);
    assert.ok(peakMiB < 60, `${peakMiB.toFixed(1)} MiB of buffers at once`);
    const mount = h.core.mounts.resolve('/s3/mid');
    for (const [name, sha] of hashes) {
      const hash = createHash('sha256');
      for await (const chunk of await mount.driver.read(`${mount.path}/${name}`))
        hash.update(chunk as Buffer);
      assert.equal(hash.digest('hex'), sha, name);
    }
  });
});
