import { type ChildProcess, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { isFinished, type TaskView, waitFor } from './harness.ts';

/** The project root: `ferry serve` runs from here, as a user would run it from a checkout. */
export const PROJECT_ROOT = join(import.meta.dirname, '..', '..');

/** A free TCP port on loopback, found by listening on port 0 (closed again before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Wait until `child` (a server the test started) accepts connections on `port` of loopback;
 * fails at once with the end of its output (`log`) when it exits, or after 15 s.
 */
export async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const name = child.spawnfile;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} did not listen on ${port} within 15 s: ${log()}`);
}

export interface Envelope<T> {
  code: number;
  message: string;
  data: T;
}

/** One `node --import tsx src/cli.ts serve` (or built `node <entry> serve`) process, talked to over real HTTP. */
export interface FerryProcess {
  child: ChildProcess;
  pid: number;
  base: string;
  /** stdout + stderr so far, for failure messages. */
  output(): string;
  /** Resolves when the process has exited (code or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Call the JSON API (AList envelope). A Buffer body is sent raw, anything else as JSON. */
  api<T = unknown>(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    options?: { token?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<Envelope<T>>;
  /** Poll the task's `info` (as `token`) every 50 ms until it succeeded, failed or was canceled. */
  finished(token: string, type: string, id: string, timeoutMs?: number): Promise<TaskView>;
  /** `kill -9`: SIGKILL by pid, then wait until the process is really gone. */
  kill9(): Promise<void>;
  /** SIGTERM (SIGKILL after 10 s) and wait for the exit. Safe to call when already gone. */
  stop(): Promise<void>;
}

/**
 * Spawn ferry on `dataDir` with a port picked here, and wait until `/ping` answers. `env` adds to
 * (and overrides) the inherited environment; `entry` runs a built `cli.js` instead of the source
 * under tsx. Throws, after killing the child, when it does not come up within 30 s or exits early.
 */
export async function spawnFerry(
  dataDir: string,
  env: Record<string, string> = {},
  { entry }: { entry?: string } = {},
): Promise<FerryProcess> {
  const port = await freePort();
  const argv = entry ? [entry, 'serve'] : ['--import', 'tsx', 'src/cli.ts', 'serve'];
  const child = spawn(process.execPath, argv, {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      FERRY_DATA_DIR: dataDir,
      FERRY_PORT: String(port),
      FERRY_HOST: '127.0.0.1',
      FERRY_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (gone()) throw new Error(`ferry exited before serving:\n${output}`);
    try {
      const res = await request(`${base}/ping`, { headersTimeout: 2000, bodyTimeout: 2000 });
      if ((await res.body.text()) === 'pong') break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`ferry did not answer /ping within 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (child.pid === undefined) throw new Error('spawned ferry has no pid');
  const pid = child.pid;
  const ferry: FerryProcess = {
    child,
    pid,
    base,
    exited,
    output: () => output,
    async api<T>(
      method: 'GET' | 'POST' | 'PUT',
      path: string,
      options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
    ): Promise<Envelope<T>> {
      const headers: Record<string, string> = { ...options.headers };
      if (options.token) headers.authorization = options.token;
      let body: string | Buffer | undefined;
      if (Buffer.isBuffer(options.body)) body = options.body;
      else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] = 'application/json';
      }
      const res = await request(`${base}${path}`, { method, headers, ...(body !== undefined && { body }) });
      const text = await res.body.text();
      try {
        return JSON.parse(text) as Envelope<T>;
      } catch {
        throw new Error(`${method} ${path}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`);
      }
    },
    finished(token, type, id, timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const res = await ferry.api<TaskView[]>('POST', `/api/task/${type}/info?tid=${id}`, { token });
          const t = res.data?.[0];
          return t && isFinished(t.state) ? t : undefined;
        },
        timeoutMs,
        `${type} task ${id} to finish`,
        50,
      );
    },
    async kill9() {
      if (gone()) return;
      process.kill(pid, 'SIGKILL');
      await exited;
    },
    async stop() {
      if (gone()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!gone()) child.kill('SIGKILL');
      }, 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return ferry;
}
