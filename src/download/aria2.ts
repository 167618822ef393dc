import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Logger } from 'pino';
import { FerryError } from '../errors.ts';

/** A download as `aria2.tellStatus` reports it (the keys ferry asks for). */
export interface Aria2Status {
  gid: string;
  status: 'active' | 'waiting' | 'paused' | 'error' | 'complete' | 'removed';
  totalLength: string;
  completedLength: string;
  downloadSpeed: string;
  errorCode?: string;
  errorMessage?: string;
  /** Set when a download produced others (a .torrent or magnet's metadata → the real download). */
  followedBy?: string[];
  dir?: string;
}

const STATUS_KEYS = [
  'gid',
  'status',
  'totalLength',
  'completedLength',
  'downloadSpeed',
  'errorCode',
  'errorMessage',
  'followedBy',
  'dir',
];

/** aria2's JSON-RPC over HTTP (global fetch, which is undici). */
export class Aria2Client {
  private nextId = 1;

  constructor(
    readonly rpcUrl: string,
    private readonly secret: string,
  ) {}

  /** Call `method`; aria2's error replies become `E_BACKEND` carrying aria2's message. */
  async call<T>(method: string, params: unknown[] = [], signal?: AbortSignal): Promise<T> {
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: String(this.nextId++),
      method,
      params: this.secret ? [`token:${this.secret}`, ...params] : params,
    });
    let res: Response;
    try {
      res = await fetch(this.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: signal ?? AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new FerryError('E_BACKEND', `aria2 RPC unreachable at ${this.rpcUrl}`, { cause: err });
    }
    const reply = (await res.json().catch(() => null)) as {
      result?: T;
      error?: { code: number; message: string };
    } | null;
    if (!reply) throw new FerryError('E_BACKEND', `aria2 RPC answered HTTP ${res.status} without JSON`);
    if (reply.error) throw new Aria2RpcError(method, reply.error.code, reply.error.message);
    return reply.result as T;
  }

  tellStatus(gid: string): Promise<Aria2Status> {
    return this.call<Aria2Status>('aria2.tellStatus', [gid, STATUS_KEYS]);
  }

  /** The status, or null when aria2 does not know the gid (removed, or aria2 restarted). */
  async findStatus(gid: string): Promise<Aria2Status | null> {
    try {
      return await this.tellStatus(gid);
    } catch (err) {
      if (err instanceof Aria2RpcError) return null;
      throw err;
    }
  }

  addUri(uris: string[], options: Record<string, string>): Promise<string> {
    return this.call<string>('aria2.addUri', [uris, options]);
  }

  /**
   * Stop and forget a download at once: `forceRemove` (no goodbye to peers/trackers), then drop
   * its result once aria2 has let go of it. Unknown gids are fine.
   */
  async forget(gid: string, waitMs = 600): Promise<void> {
    await this.call('aria2.forceRemove', [gid]).catch(() => undefined);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const status = await this.findStatus(gid).catch(() => null);
      if (status?.status !== 'active') break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.call('aria2.removeDownloadResult', [gid]).catch(() => undefined);
  }
}

export class Aria2RpcError extends FerryError {
  constructor(
    method: string,
    readonly rpcCode: number,
    rpcMessage: string,
  ) {
    super('E_BACKEND', `aria2 ${method}: ${rpcMessage}`);
  }
}

/**
 * ferry's own `aria2c --enable-rpc`: loopback only, a random secret, its own folder, and
 * `--stop-with-process` so it dies with ferry even after a kill -9. Started on first use.
 */
export class Aria2Daemon {
  private child: ChildProcess | null = null;

  private constructor(
    readonly client: Aria2Client,
    child: ChildProcess,
  ) {
    this.child = child;
  }

  static async start(options: { binary: string; dir: string; log: Logger }): Promise<Aria2Daemon> {
    await mkdir(options.dir, { recursive: true });
    const port = await freePort();
    const secret = randomBytes(18).toString('base64url');
    const child = spawn(
      options.binary,
      [
        '--no-conf=true',
        '--enable-rpc=true',
        '--rpc-listen-all=false',
        `--rpc-listen-port=${port}`,
        `--rpc-secret=${secret}`,
        `--dir=${options.dir}`,
        `--stop-with-process=${process.pid}`,
        '--continue=true',
        '--auto-file-renaming=false',
        '--allow-overwrite=true',
        '--file-allocation=none',
        '--seed-time=0',
        // aria2 keeps logged-in FTP connections per host and user, not per password: one user's
        // URL with a wrong password would ride on another's login.
        '--ftp-reuse-connection=false',
        '--max-concurrent-downloads=16',
        '--console-log-level=warn',
        '--summary-interval=0',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let output = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-2000);
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    try {
      await spawned;
    } catch (err) {
      // Not installed: a retry would not help; say what to do.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new FerryError(
          'E_BAD_REQUEST',
          `the aria2 tool is not available: ${options.binary} is not installed (or set offlineDownload.aria2.rpcUrl)`,
          { cause: err },
        );
      throw new FerryError('E_BACKEND', `cannot start ${options.binary}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const daemon = new Aria2Daemon(new Aria2Client(`http://127.0.0.1:${port}/jsonrpc`, secret), child);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null)
        throw new FerryError('E_BACKEND', `aria2c exited with ${child.exitCode}: ${output.trim()}`);
      try {
        await daemon.client.call('aria2.getVersion', [], AbortSignal.timeout(1000));
        break;
      } catch (err) {
        if (Date.now() > deadline) {
          await daemon.close();
          throw new FerryError('E_BACKEND', `aria2c did not answer on port ${port}`, { cause: err });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    options.log.info({ port, pid: child.pid }, 'started aria2c for offline downloads');
    return daemon;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Stop aria2c (SIGTERM, then SIGKILL after 2 s) and wait for it to exit. */
  async close(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
