import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempPathFor } from '../src/storage/paths.ts';
import { waitFor } from './helpers/harness.ts';
import { type FerryProcess, spawnFerry } from './helpers/process.ts';
import { findTempFiles, sha256, sha256File, writeRandomFile } from './helpers/tree.ts';

/**
 * A real `ferry serve` process is killed with SIGKILL while copies run; the same command on the same
 * data directory must finish every task, byte for byte, with no temp files left.
 */

interface TaskView {
  id: string;
  name: string;
  state: string;
  error: string;
  progress: number;
  total_bytes: number;
}

const PASSWORD = 'crash-recovery-password';
const COPIES = 100;
const MiB = 1024 * 1024;

describe('crash recovery of a real server killed with SIGKILL', () => {
  let dataDir: string;
  let server: FerryProcess | null = null;
  const env = { FERRY_ADMIN_PASSWORD: PASSWORD };
  /** Every server started, so that none outlives a test that failed half-way. */
  const started: FerryProcess[] = [];
  const start = async (dir: string) => {
    const s = await spawnFerry(dir, env);
    started.push(s);
    return s;
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-crash-recovery-'));
  });
  after(async () => {
    // Whatever happened, no server outlives the test.
    for (const s of started)
      if (s.child.exitCode === null && s.child.signalCode === null) await s.kill9().catch(() => undefined);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const login = async (s: FerryProcess) => {
    const res = await s.api<{ token: string }>('POST', '/api/auth/login', {
      body: { username: 'admin', password: PASSWORD },
    });
    assert.equal(res.code, 200, `login: ${res.message}`);
    return res.data.token;
  };
  const tasks = async (s: FerryProcess, token: string, type: string, which: 'done' | 'undone') => {
    const res = await s.api<TaskView[]>('GET', `/api/task/${type}/${which}`, { token });
    assert.equal(res.code, 200, `${type}/${which}: ${res.message}`);
    return res.data;
  };

  it(`finishes ${COPIES} copies and an upload after kill -9 and a restart, every file identical`, {
    timeout: 180_000,
  }, async () => {
    const files = join(dataDir, 'files');
    const src = join(files, 'src');
    await mkdir(src, { recursive: true });
    const expected = new Map<string, string>();
    let t = Date.now();
    let bytes = 0;
    for (let i = 0; i < COPIES; i++) {
      const size = 2 * MiB + ((i * 2_654_435) % (6 * MiB)); // 2–8 MB, varied
      expected.set(`file-${i}.bin`, await writeRandomFile(join(src, `file-${i}.bin`), size));
      bytes += size;
    }
    console.log(`# wrote ${COPIES} source files (${bytes} bytes) in ${Date.now() - t} ms`);

    t = Date.now();
    server = await start(dataDir);
    console.log(`# first server up in ${Date.now() - t} ms (pid ${server.pid})`);
    let token = await login(server);

    const copy = await server.api<{ tasks: TaskView[] }>('POST', '/api/fs/copy', {
      token,
      body: { src_dir: '/local/src', dst_dir: '/local/dst', names: [...expected.keys()] },
    });
    assert.equal(copy.code, 200, copy.message);
    assert.equal(copy.data.tasks.length, COPIES);
    const copyIds = new Set(copy.data.tasks.map((x) => x.id));

    // A 30 MB upload as a task; its reply (the body is spooled and the task stored) comes before the kill.
    const upload = randomBytes(30 * MiB);
    const put = await server.api<{ task: TaskView }>('PUT', '/api/fs/put', {
      token,
      body: upload,
      headers: {
        'file-path': encodeURIComponent('/local/uploaded/big upload.bin'),
        'as-task': 'true',
        'content-type': 'application/octet-stream',
      },
    });
    assert.equal(put.code, 200, put.message);
    const uploadId = put.data.task.id;

    // Kill while several copies run (and, ideally, some are done and some still wait).
    const runningBefore = await waitFor(
      async () => {
        const undone = await tasks(server!, token, 'copy', 'undone');
        const running = undone.filter((x) => x.state === 'running');
        return running.length >= 2 ? { running, undone: undone.length } : undefined;
      },
      60_000,
      'several copies to be running',
    );
    const killedAt = Date.now();
    const victim = server;
    await victim.kill9();
    const exit = await victim.exited;
    assert.equal(exit.signal, 'SIGKILL', 'the process died of SIGKILL');
    server = null;
    console.log(
      `# killed with ${runningBefore.running.length} copies running, ${runningBefore.undone} unfinished, ` +
        `${Date.now() - t} ms after start`,
    );
    assert.ok(runningBefore.running.length >= 1, 'at least one copy was running when the process died');

    // Evidence of interruption on disk: destinations of running copies that are not (fully) there.
    const dst = join(files, 'dst');
    let incomplete = 0;
    for (const task of runningBefore.running) {
      const name = /\(\/src\/([^)]+)\)/.exec(task.name)?.[1];
      assert.ok(name, `task name names its source: ${task.name}`);
      const hash = await sha256File(join(dst, name)).catch(() => null);
      if (hash !== expected.get(name)) incomplete++;
    }
    const tempsAtKill = await findTempFiles(files);
    console.log(
      `# at the kill: ${incomplete} of the running copies had no complete destination; ` +
        `${tempsAtKill.length} temp files on disk`,
    );
    assert.ok(incomplete >= 1, 'the kill cut at least one copy short');

    t = Date.now();
    server = await start(dataDir);
    console.log(`# restarted in ${Date.now() - t} ms (pid ${server.pid})`);
    token = await login(server);

    const done = await waitFor(
      async () => {
        const list = (await tasks(server!, token, 'copy', 'done')).filter((x) => copyIds.has(x.id));
        return list.length === COPIES ? list : undefined;
      },
      150_000,
      `all ${COPIES} copies finished after the restart`,
    );
    console.log(`# all copies finished ${Date.now() - killedAt} ms after the kill`);
    assert.deepEqual(
      done.filter((x) => x.state !== 'succeeded').map((x) => `${x.name}: ${x.state} ${x.error}`),
      [],
      'every copy succeeded',
    );
    for (const task of runningBefore.running) {
      assert.equal(done.find((x) => x.id === task.id)?.state, 'succeeded', `interrupted ${task.name}`);
    }
    const uploaded = await waitFor(
      async () => (await tasks(server!, token, 'upload', 'done')).find((x) => x.id === uploadId),
      60_000,
      'the upload task to finish',
    );
    assert.equal(uploaded.state, 'succeeded', uploaded.error);
    assert.deepEqual(await tasks(server, token, 'copy', 'undone'), [], 'no copy left unfinished');

    // Every destination byte-identical to its source; nothing extra; no temp files anywhere.
    assert.deepEqual((await readdir(dst)).sort(), [...expected.keys()].sort());
    for (const [name, hash] of expected) assert.equal(await sha256File(join(dst, name)), hash, name);
    for (const [name, hash] of expected)
      assert.equal(await sha256File(join(src, name)), hash, `source ${name}`);
    assert.equal(await sha256File(join(files, 'uploaded', 'big upload.bin')), sha256(upload));
    assert.deepEqual(
      await findTempFiles(files),
      [],
      `no .ferry-tmp-* file remains (the upload's would be ${tempPathFor('/uploaded/big upload.bin', uploadId)})`,
    );
    // The spool goes just after the success is recorded (or at the next start, when the process
    // died in between): wait for it, within a bound.
    await waitFor(
      async () => (await readdir(join(dataDir, 'spool'))).length === 0 || undefined,
      10_000,
      'the upload spool to be emptied',
    );

    await server.stop();
    server = null;
  });

  it('a task its server died under three times is failed, not started a fourth time; the server serves on', {
    timeout: 120_000,
  }, async () => {
    // An origin that sends a byte now and then: the download runs until the server dies under it.
    const origin = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': MiB });
      const timer = setInterval(() => res.write('x'), 50);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const poisonDir = join(dataDir, 'poison');
    try {
      server = await start(poisonDir);
      let token = await login(server);
      const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/endless.bin`;
      const added = await server.api<{ tasks: TaskView[] }>('POST', '/api/fs/add_offline_download', {
        token,
        body: { urls: [url], path: '/local/in', tool: 'SimpleHttp' },
      });
      assert.equal(added.code, 200, added.message);
      const id = added.data.tasks[0]?.id as string;
      const state = async () =>
        (await server!.api<TaskView[]>('POST', `/api/task/offline_download/info?tid=${id}`, { token }))
          .data[0];
      for (let death = 1; death <= 3; death++) {
        await waitFor(
          async () => ((await state())?.state === 'running' ? true : undefined),
          20_000,
          'running',
        );
        await server.kill9();
        server = await start(poisonDir);
        token = await login(server);
      }
      const failed = await state();
      assert.equal(failed?.state, 'failed', 'not resumed after the third death');
      assert.match(failed?.error ?? '', /server stopped while running this task 3 times/);

      // The server serves, and runs other tasks.
      await mkdir(join(poisonDir, 'files', 'a'), { recursive: true });
      await writeFile(join(poisonDir, 'files', 'a', 'x.txt'), 'still working');
      const copy = await server.api<{ tasks: TaskView[] }>('POST', '/api/fs/copy', {
        token,
        body: { src_dir: '/local/a', dst_dir: '/local/b', names: ['x.txt'] },
      });
      const copyId = copy.data.tasks[0]?.id as string;
      const copied = await waitFor(async () => {
        const t = (await server!.api<TaskView[]>('POST', `/api/task/copy/info?tid=${copyId}`, { token }))
          .data[0];
        return t?.state === 'succeeded' ? t : undefined;
      });
      assert.equal(copied.state, 'succeeded');

      // A retry by hand runs it again (and a fresh count of interruptions starts).
      assert.equal(
        (await server.api('POST', `/api/task/offline_download/retry?tid=${id}`, { token })).code,
        200,
      );
      await waitFor(
        async () => ((await state())?.state === 'running' ? true : undefined),
        20_000,
        'running again',
      );
      await server.api('POST', `/api/task/offline_download/cancel?tid=${id}`, { token });
      await server.stop();
      server = null;
    } finally {
      origin.closeAllConnections();
      await new Promise((resolve) => origin.close(resolve));
    }
  });
});
