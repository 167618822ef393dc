import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/core.ts';
import { waitFor } from './helpers/harness.ts';
import { spawnFerry } from './helpers/process.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'src', 'cli.ts');

function ferry(dataDir: string, ...args: string[]) {
  return ferryWith({}, dataDir, ...args);
}

function ferryWith(env: Record<string, string>, dataDir: string, ...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { ...process.env, FERRY_DATA_DIR: dataDir, FERRY_ADMIN_PASSWORD: 'first-start', ...env },
    timeout: 30_000,
  });
}

describe('ferry CLI', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-cli-'));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  it('prints usage for --help', async () => {
    const { stdout } = await ferry(dataDir, '--help');
    assert.match(stdout, /ferry serve/);
    assert.match(stdout, /ferry user add/);
  });

  it('adds users, lists them and changes passwords that then work for login', async () => {
    assert.match((await ferry(dataDir, 'user', 'add', 'alice', 'pw-1')).stdout, /added user alice/);
    const { stdout } = await ferry(dataDir, 'user', 'list');
    assert.match(stdout, /\tadmin\trole=2/);
    assert.match(stdout, /\talice\trole=0/);
    await ferry(dataDir, 'user', 'passwd', 'alice', 'pw-2');
    const config = await loadConfig({ FERRY_DATA_DIR: dataDir });
    const core = await startCore(config, pino({ level: 'silent' }), { runWorkers: false });
    try {
      await assert.rejects(core.auth.login('alice', 'pw-1'));
      assert.ok(await core.auth.login('alice', 'pw-2'));
      assert.ok(await core.auth.login('admin', 'first-start'));
    } finally {
      await core.close();
    }
  });

  it('serve exits with an error when its port is taken, instead of running on unseen', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    try {
      const env = { FERRY_HOST: '127.0.0.1', FERRY_PORT: String(port) };
      await assert.rejects(ferryWith(env, dataDir, 'serve'), (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 1);
        assert.match(err.stderr, /EADDRINUSE/);
        return true;
      });
    } finally {
      taken.close();
    }
  });

  it('serve logs a stray rejected promise and keeps serving instead of dying with every transfer', async () => {
    // A preload rejects a promise that nothing handles once the server runs (a bug of the kind
    // Node's default answers by ending the process): on SIGUSR2, sent once /ping answers, so
    // however long the start takes, the rejection comes while the server serves.
    const preload = join(dataDir, 'reject-later.mjs');
    await writeFile(
      preload,
      "process.on('SIGUSR2', () => { Promise.reject(new Error('a stray rejection')); });\n",
    );
    const server = await spawnFerry(join(dataDir, 'stray'), {
      FERRY_ADMIN_PASSWORD: 'first-start',
      FERRY_LOG_LEVEL: 'error',
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(preload).href}`.trim(),
    });
    try {
      server.child.kill('SIGUSR2');
      await waitFor(
        async () => (server.output().includes('a stray rejection') ? true : undefined),
        10_000,
        'the rejection logged',
      );
      assert.match(server.output(), /unhandled rejection \(a bug\): serving on/);
      const ping = await fetch(`${server.base}/ping`).then((r) => r.text());
      assert.equal(ping, 'pong');
      assert.equal(server.child.exitCode, null, 'the server exited');
    } finally {
      await server.stop();
    }
  });

  it('refuses unknown commands with a non-zero exit and a message', async () => {
    await assert.rejects(ferry(dataDir, 'frobnicate'), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /unknown command/);
      return true;
    });
  });
});
