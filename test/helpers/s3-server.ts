import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Harness } from './harness.ts';

/**
 * A real S3-protocol server (s3rver) on loopback with one bucket, in its own process: a fault
 * test can kill it (SIGKILL) and start it again, and a test that sends it many requests does not
 * share ferry's event loop with it. That process runs with `--openssl-legacy-provider`: s3rver
 * makes its continuation tokens with DES, which Node's OpenSSL 3 refuses otherwise, so every
 * listing longer than one page (1,000 keys) would fail with a 500.
 */
export interface S3Server {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The folder s3rver keeps its buckets in. */
  directory: string;
  /** SIGKILL: every connection drops at once, as when a server dies. */
  stop(): Promise<void>;
  /** Start again on the same port and folder. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startS3Server(bucket = 'ferry-test'): Promise<S3Server> {
  const directory = await mkdtemp(join(tmpdir(), 'ferry-s3rver-'));
  const script = fileURLToPath(new URL('./s3rver-child.ts', import.meta.url));
  let child: ChildProcess | null = null;
  let port = 0;
  const start = async () => {
    const proc = spawn(
      process.execPath,
      ['--openssl-legacy-provider', '--import', 'tsx', script, directory, bucket, String(port)],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    child = proc;
    let output = '';
    proc.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    port = await new Promise<number>((resolve, reject) => {
      proc.stdout?.on('data', (d: Buffer) => {
        output += d.toString();
        const found = /^port (\d+)$/m.exec(output);
        if (found) resolve(Number(found[1]));
      });
      proc.once('exit', () => reject(new Error(`s3rver exited during start-up: ${output}`)));
    });
  };
  const stop = async () => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    directory,
    start,
    stop,
    async close() {
      await stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** AList's `addition` fields of an S3 mount of `server`, below `root` in its bucket. */
export function s3Addition(server: S3Server, root = '/'): Record<string, unknown> {
  return {
    bucket: server.bucket,
    endpoint: server.endpoint,
    region: 'us-east-1',
    access_key_id: server.accessKeyId,
    secret_access_key: server.secretAccessKey,
    force_path_style: true,
    root_folder_path: root,
  };
}

/** Mount `server` at `mountPath` through the admin API (`root`: the folder in its bucket). */
export async function mountS3(h: Harness, server: S3Server, root = '/', mountPath = '/s3'): Promise<void> {
  const res = await h.json('POST', '/api/admin/storage/create', {
    token: h.adminToken,
    body: { mount_path: mountPath, driver: 'S3', addition: JSON.stringify(s3Addition(server, root)) },
  });
  assert.equal(res.code, 200, `mount S3 at ${mountPath}: ${res.message}`);
}
