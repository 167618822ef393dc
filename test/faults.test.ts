import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, isFinished, startHarness, waitFor } from './helpers/harness.ts';
import { type RcloneServer, rcloneAvailable, startRclone } from './helpers/rclone.ts';
import { mountS3, type S3Server, startS3Server } from './helpers/s3-server.ts';
import { FERRY_TEMP_PREFIX, sha256File, writeRandomFile } from './helpers/tree.ts';

/**
 * A remote backend that goes away in the middle of a 200 MB transfer, and a transfer canceled in
 * the middle: real `rclone serve webdav|sftp` servers, killed with SIGKILL and started again on
 * the same port. The served folders are on this machine, so the test looks at them directly.
 */

const BIG_BYTES = Number(process.env.FERRY_TEST_BIG_MB ?? 200) * 1024 * 1024;

interface TaskInfo {
  id: string;
  state: string;
  error: string;
  retries: number;
  processed_bytes: number;
}

/** Poll (every 2 ms) until a ferry temp file of at least `bytes` exists somewhere below `dir`. */
async function waitForTemp(dir: string, bytes: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const name of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
      const base = name.split('/').pop() ?? '';
      if (!base.startsWith(FERRY_TEMP_PREFIX)) continue;
      const size = await stat(join(dir, name)).then(
        (s) => s.size,
        () => 0,
      );
      if (size >= bytes) return;
    }
    if (Date.now() > deadline) throw new Error(`no temp file of ${bytes} bytes appeared in ${dir}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function tempFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return names.filter((n) => (n.split('/').pop() ?? '').startsWith(FERRY_TEMP_PREFIX));
}

/** Poll a copy task until it has ended (succeeded, failed or canceled). */
async function taskEnded(h: Harness, id: string, timeoutMs: number, what: string): Promise<TaskInfo> {
  return waitFor(
    async () => {
      const res = await h.json<TaskInfo[]>('POST', `/api/task/copy/info?tid=${id}`, { token: h.adminToken });
      const t = res.data[0];
      return t && isFinished(t.state) ? t : undefined;
    },
    timeoutMs,
    what,
  );
}

const enabled = rcloneAvailable();

describe('a remote backend failing or a transfer canceled mid-way', { skip: !enabled }, () => {
  let h: Harness;
  let bigSha = '';
  const servers: Record<'webdav' | 'sftp', RcloneServer | undefined> = { webdav: undefined, sftp: undefined };

  const info = async (type: string, id: string) =>
    (await h.json<TaskInfo[]>('POST', `/api/task/${type}/info?tid=${id}`, { token: h.adminToken })).data[0];

  const copy = async (dstDir: string, srcDir = '/local') => {
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: srcDir, dst_dir: dstDir, names: ['big.bin'] },
    });
    assert.equal(res.code, 200, res.message);
    return res.data.tasks[0]?.id ?? '';
  };

  before(async () => {
    // Quick retries, and enough of them to outlast a server that is down for a moment.
    h = await startHarness({
      tasks: { retryBaseDelayMs: 200, retryMaxDelayMs: 1000, maxRetry: { copy: 20 } },
    });
    bigSha = await writeRandomFile(join(h.dataDir, 'files', 'big.bin'), BIG_BYTES);
    servers.webdav = await startRclone('webdav');
    servers.sftp = await startRclone('sftp');
    // The same file on each server, for the downloads (remote → Local: parallel ranged reads).
    for (const server of [servers.webdav, servers.sftp]) {
      await mkdir(join(server.root, 'src'), { recursive: true });
      await copyFile(join(h.dataDir, 'files', 'big.bin'), join(server.root, 'src', 'big.bin'));
    }
    for (const [mountPath, driver, server] of [
      ['/dav', 'WebDav', servers.webdav],
      ['/sftp', 'SFTP', servers.sftp],
    ] as const) {
      const addition = { address: server.address, username: server.username, password: server.password };
      const res = await h.json('POST', '/api/admin/storage/create', {
        token: h.adminToken,
        body: {
          mount_path: mountPath,
          driver,
          addition: JSON.stringify({ ...addition, root_folder_path: '/' }),
        },
      });
      assert.equal(res.code, 200, `${driver}: ${res.message}`);
    }
  });

  after(async () => {
    await h?.close();
    await Promise.all([servers.webdav?.close(), servers.sftp?.close()]);
  });

  for (const [protocol, mountPath] of [
    ['webdav', '/dav'],
    ['sftp', '/sftp'],
  ] as const) {
    it(`${protocol}: the server killed mid-transfer → waiting_retry, then succeeded once it is back`, async () => {
      const server = servers[protocol] as RcloneServer;
      const id = await copy(`${mountPath}/retry`);
      await waitForTemp(server.root, 8 * 1024 * 1024);
      await server.stop();
      const waiting = await waitFor(
        async () => {
          const t = await info('copy', id);
          return t && ['waiting_retry', 'errored', 'failed', 'succeeded'].includes(t.state) ? t : undefined;
        },
        20_000,
        'the task to notice',
      );
      assert.ok(
        ['waiting_retry', 'errored'].includes(waiting.state),
        `state ${waiting.state}: ${waiting.error}`,
      );
      await assert.rejects(
        stat(join(server.root, 'retry', 'big.bin')),
        'no partial file under the final name',
      );
      await new Promise((r) => setTimeout(r, 500));
      await server.start();
      const done = await taskEnded(h, id, 120_000, 'the retried task');
      assert.equal(done.state, 'succeeded', done.error);
      assert.ok(done.retries >= 1, 'it took a retry');
      assert.equal(await sha256File(join(server.root, 'retry', 'big.bin')), bigSha);
      assert.deepEqual(await tempFiles(server.root), [], 'no temp file left');
    });

    it(`${protocol}: a cancel mid-transfer ends canceled within 1 s and leaves nothing behind`, async () => {
      const server = servers[protocol] as RcloneServer;
      const id = await copy(`${mountPath}/cancel`);
      await waitForTemp(server.root, 8 * 1024 * 1024);
      const asked = Date.now();
      const res = await h.json('POST', `/api/task/copy/cancel?tid=${id}`, { token: h.adminToken });
      assert.equal(res.code, 200, res.message);
      const ended = await taskEnded(h, id, 10_000, 'the canceled task');
      assert.equal(ended.state, 'canceled');
      assert.ok(Date.now() - asked < 1000, `canceled after ${Date.now() - asked} ms`);
      await assert.rejects(stat(join(server.root, 'cancel', 'big.bin')), 'nothing under the final name');
      // The temp file goes with the cancel (the driver removes it as the write aborts).
      await waitFor(
        async () => ((await tempFiles(server.root)).length === 0 ? true : undefined),
        5_000,
        'temp gone',
      );
    });

    it(`${protocol} → Local: the server killed mid-download → retried, the file whole and identical`, async () => {
      const server = servers[protocol] as RcloneServer;
      const id = await copy(`/local/${protocol}-down-retry`, `${mountPath}/src`);
      const started = await waitFor(
        async () => {
          const t = await info('copy', id);
          const ended =
            t && ['succeeded', 'failed', 'canceled', 'waiting_retry', 'errored'].includes(t.state);
          return t && (t.processed_bytes >= 8 * 1024 * 1024 || ended) ? t : undefined;
        },
        30_000,
        'the download to start',
        5,
      );
      assert.equal(started.state, 'running', `${started.state}: ${started.error}`);
      await server.stop();
      await new Promise((r) => setTimeout(r, 500));
      await assert.rejects(
        stat(join(h.dataDir, 'files', `${protocol}-down-retry`, 'big.bin')),
        'nothing under the final name',
      );
      await server.start();
      const done = await taskEnded(h, id, 120_000, 'the retried task');
      assert.equal(done.state, 'succeeded', done.error);
      assert.ok(done.retries >= 1, 'it took a retry');
      assert.equal(await sha256File(join(h.dataDir, 'files', `${protocol}-down-retry`, 'big.bin')), bigSha);
      assert.deepEqual(
        await tempFiles(join(h.dataDir, 'files', `${protocol}-down-retry`)),
        [],
        'no temp file left',
      );
    });

    it(`${protocol} → Local: a cancel mid-download ends canceled within 1 s, no file and no temp left`, async () => {
      const id = await copy(`/local/${protocol}-down-cancel`, `${mountPath}/src`);
      const started = await waitFor(
        async () => {
          const t = await info('copy', id);
          const ended =
            t && ['succeeded', 'failed', 'canceled', 'waiting_retry', 'errored'].includes(t.state);
          return t && (t.processed_bytes >= 8 * 1024 * 1024 || ended) ? t : undefined;
        },
        30_000,
        'the download to start',
        5,
      );
      assert.equal(started.state, 'running', `${started.state}: ${started.error}`);
      const asked = Date.now();
      const res = await h.json('POST', `/api/task/copy/cancel?tid=${id}`, { token: h.adminToken });
      assert.equal(res.code, 200, res.message);
      const ended = await taskEnded(h, id, 10_000, 'the canceled task');
      assert.equal(ended.state, 'canceled');
      assert.ok(Date.now() - asked < 1000, `canceled after ${Date.now() - asked} ms`);
      const dir = join(h.dataDir, 'files', `${protocol}-down-cancel`);
      await assert.rejects(stat(join(dir, 'big.bin')), 'nothing under the final name');
      await waitFor(async () => ((await tempFiles(dir)).length === 0 ? true : undefined), 5_000, 'temp gone');
    });
  }
});

describe('an S3 server failing or an upload to it canceled mid-way', () => {
  let h: Harness;
  let s3: S3Server;
  let bigSha = '';

  const info = async (id: string) =>
    (await h.json<TaskInfo[]>('POST', `/api/task/copy/info?tid=${id}`, { token: h.adminToken })).data[0];

  const copyToS3 = async (dstDir: string) => {
    const res = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      token: h.adminToken,
      body: { src_dir: '/local', dst_dir: dstDir, names: ['big.bin'] },
    });
    assert.equal(res.code, 200, res.message);
    return res.data.tasks[0]?.id ?? '';
  };

  /** Wait until the upload has sent 16 MiB (three 5 MiB parts), or ended. */
  const uploading = async (id: string) => {
    const t = await waitFor(
      async () => {
        const t = await info(id);
        const ended = t && ['succeeded', 'failed', 'canceled', 'waiting_retry', 'errored'].includes(t.state);
        return t && (t.processed_bytes >= 16 * 1024 * 1024 || ended) ? t : undefined;
      },
      30_000,
      'the upload to start',
      5,
    );
    assert.equal(t.state, 'running', `${t.state}: ${t.error}`);
  };

  /** What s3rver keeps on disk for the object `key` (its files are named after the key). */
  const storedAs = async (key: string) =>
    (await readdir(join(s3.directory, s3.bucket), { recursive: true }).catch(() => [] as string[])).filter(
      (n) => n.startsWith(`${key}.`),
    );

  const s3Path = (path: string) => h.core.mounts.resolve(path);

  before(async () => {
    h = await startHarness({
      tasks: { retryBaseDelayMs: 200, retryMaxDelayMs: 1000, maxRetry: { copy: 20 } },
    });
    bigSha = await writeRandomFile(join(h.dataDir, 'files', 'big.bin'), BIG_BYTES);
    s3 = await startS3Server();
    await mountS3(h, s3);
  });

  after(async () => {
    await h?.close();
    await s3?.close();
  });

  it('s3: the server killed mid-upload → waiting_retry, no object yet; then succeeded once it is back', async () => {
    const id = await copyToS3('/s3/retry');
    await uploading(id);
    await s3.stop();
    const waiting = await waitFor(
      async () => {
        const t = await info(id);
        return t && ['waiting_retry', 'errored', 'failed', 'succeeded'].includes(t.state) ? t : undefined;
      },
      20_000,
      'the task to notice',
    );
    assert.ok(
      ['waiting_retry', 'errored'].includes(waiting.state),
      `state ${waiting.state}: ${waiting.error}`,
    );
    assert.deepEqual(await storedAs('retry/big.bin'), [], 'no object while the upload is incomplete');
    await s3.start();
    const done = await taskEnded(h, id, 120_000, 'the retried task');
    assert.equal(done.state, 'succeeded', done.error);
    assert.ok(done.retries >= 1, 'it took a retry');
    const at = s3Path('/s3/retry/big.bin');
    const hash = createHash('sha256');
    for await (const chunk of await at.driver.read(at.path)) hash.update(chunk as Buffer);
    assert.equal(hash.digest('hex'), bigSha);
  });

  it('s3: a cancel mid-upload ends canceled within 1 s and no object appears', async () => {
    const id = await copyToS3('/s3/cancel');
    await uploading(id);
    const asked = Date.now();
    const res = await h.json('POST', `/api/task/copy/cancel?tid=${id}`, { token: h.adminToken });
    assert.equal(res.code, 200, res.message);
    const ended = await taskEnded(h, id, 10_000, 'the canceled task');
    assert.equal(ended.state, 'canceled');
    assert.ok(Date.now() - asked < 1000, `canceled after ${Date.now() - asked} ms`);
    // Parts already sent are aborted with the multipart upload; nothing is completed later.
    await new Promise((r) => setTimeout(r, 500));
    const at = s3Path('/s3/cancel/big.bin');
    assert.equal(await at.driver.stat(at.path), null, 'no object under the final name');
    assert.deepEqual(await storedAs('cancel/big.bin'), []);
  });
});
