import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Harness } from './harness.ts';
import { freePort, waitForPort } from './process.ts';
import { requireTools, runs } from './tools.ts';

/**
 * A real WebDAV or SFTP server on loopback: Debian's `rclone serve webdav|sftp` over a temp
 * folder, with a user and password. `stop()` and `start()` take it away and bring it back on the
 * same port and folder, for tests of a backend that goes away mid-transfer.
 */
export interface RcloneServer {
  protocol: 'webdav' | 'sftp';
  /** `http://127.0.0.1:<port>` for WebDAV, `127.0.0.1:<port>` for SFTP (AList's `address`). */
  address: string;
  port: number;
  /** The folder on this machine the server serves. */
  root: string;
  username: string;
  password: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** True when rclone is installed; see `requireTools` for what happens when it is not. */
export function rcloneAvailable(): boolean {
  return requireTools('these tests', runs('rclone', ['version']) ? [] : ['rclone']);
}

export async function startRclone(
  protocol: 'webdav' | 'sftp',
  options: {
    root?: string;
    username?: string;
    password?: string;
    /** SFTP only: `authorized_keys` text; those keys may log in as well as the password. */
    authorizedKeys?: string;
    /** More `rclone serve` flags, e.g. `['--bwlimit', '512k']` for a slow server. */
    args?: string[];
  } = {},
): Promise<RcloneServer> {
  const root = options.root ?? (await mkdtemp(join(tmpdir(), `ferry-${protocol}-`)));
  const ownsRoot = options.root === undefined;
  const cache = await mkdtemp(join(tmpdir(), 'ferry-rclone-cache-'));
  const username = options.username ?? 'ferry';
  const password = options.password ?? 'ferry-secret';
  const port = await freePort();
  const keyArgs: string[] = [];
  if (options.authorizedKeys !== undefined) {
    const file = join(cache, 'authorized_keys');
    await writeFile(file, options.authorizedKeys, { mode: 0o600 });
    keyArgs.push('--authorized-keys', file);
  }
  let child: ChildProcess | null = null;
  let output = '';

  const start = async () => {
    output = '';
    child = spawn(
      'rclone',
      [
        'serve',
        protocol,
        root,
        '--addr',
        `127.0.0.1:${port}`,
        '--user',
        username,
        '--pass',
        password,
        '--config',
        '/dev/null',
        '--cache-dir',
        cache,
        '--log-level',
        'ERROR',
        ...keyArgs,
        ...(options.args ?? []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    });
    await waitForPort(port, child, () => output);
  };

  const stop = async () => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };

  await start();
  return {
    protocol,
    address: protocol === 'webdav' ? `http://127.0.0.1:${port}` : `127.0.0.1:${port}`,
    port,
    root,
    username,
    password,
    start,
    stop,
    async close() {
      await stop();
      await rm(cache, { recursive: true, force: true });
      if (ownsRoot) await rm(root, { recursive: true, force: true });
    },
  };
}

/** Mount the WebDAV `server` at `mountPath` through the admin API of `h`. */
export async function mountWebDav(h: Harness, server: RcloneServer, mountPath = '/dav'): Promise<void> {
  const res = await h.json('POST', '/api/admin/storage/create', {
    token: h.adminToken,
    body: {
      mount_path: mountPath,
      driver: 'WebDav',
      addition: JSON.stringify({
        address: server.address,
        username: server.username,
        password: server.password,
      }),
    },
  });
  assert.equal(res.code, 200, `mount WebDAV at ${mountPath}: ${res.message}`);
}
