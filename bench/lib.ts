/**
 * Shared pieces of the benchmarks: a real `ferry serve` child process on a free port, an HTTP
 * client over keep-alive (undici), peak RSS from /proc, timing and statistics helpers, and the
 * clean-up that kills every child and removes the temp tree whatever happens.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { appendFileSync, createReadStream } from 'node:fs';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ADMIN_PASSWORD = 'bench-admin-password';

// ---------------------------------------------------------------------------------------------
// Results

/** One line of the result table. `met` is null for figures without a goal (context only). */
export interface Row {
  bench: string;
  figure: string;
  value: string;
  ratio?: string;
  goal?: string;
  met?: boolean | null;
}

// ---------------------------------------------------------------------------------------------
// Clean-up: children and temp directories go away on success, failure, Ctrl-C and timeouts.

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void>)[] = [];

export function onCleanup(fn: () => Promise<void>): void {
  cleanups.push(fn);
}

export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export async function cleanup(): Promise<void> {
  killChildren();
  while (cleanups.length > 0) {
    const fn = cleanups.pop();
    await fn?.().catch((err) => log(`clean-up failed: ${errorText(err)}`));
  }
}

process.on('exit', killChildren);

// ---------------------------------------------------------------------------------------------
// Small helpers

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function now(): number {
  return performance.now();
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export const fmtS = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const fmtMs = (ms: number) => `${ms.toFixed(2)} ms`;
/** Decimal megabytes (10^6 bytes), from kB (KiB) as /proc reports them. */
export const fmtMB = (kib: number) => `${((kib * 1024) / 1e6).toFixed(0)} MB`;
export const mbOf = (kib: number) => (kib * 1024) / 1e6;
/** A size in binary units: `1 GiB`, `32 MiB`. */
export const fmtSize = (bytes: number) =>
  bytes >= 1024 ** 3
    ? `${Number((bytes / 1024 ** 3).toFixed(2))} GiB`
    : `${Number((bytes / 1024 ** 2).toFixed(1))} MiB`;
export const fmtRatio = (r: number) => `${r.toFixed(2)}×`;

/** Run `fn` with a deadline; the error names what timed out. */
export async function withTimeout<T>(what: string, ms: number, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run a command to completion (no shell); rejects on a non-zero exit or after `timeoutMs`. */
export function run(
  command: string,
  args: readonly string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolvePromise, reject) => {
    const started = now();
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      cwd: options.cwd ?? PROJECT_ROOT,
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 300_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const ms = now() - started;
      if (code === 0) resolvePromise({ ms, stdout });
      else
        reject(
          new Error(
            `${command} ${args.join(' ')} ${timedOut ? 'timed out' : `failed (${signal ?? `exit ${code}`})`}: ${stderr.trim()}`,
          ),
        );
    });
  });
}

/** `sync`: flush dirty pages so one timing does not pay for the previous one's write-back. */
export async function syncDisks(): Promise<void> {
  await run('sync', [], { timeoutMs: 120_000 });
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePromise(port));
    });
  });
}

/** Peak (VmHWM) and current (VmRSS) resident set of a process, in kB as /proc reports them. */
export async function memoryOf(pid: number): Promise<{ hwmKb: number; rssKb: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { hwmKb: field('VmHWM'), rssKb: field('VmRSS') };
}

/** Write `bytes` of random data (from the CSPRNG, 16 MiB at a time) to `path`, fsynced. */
export async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    const chunk = Buffer.allocUnsafe(16 * 1024 * 1024);
    for (let written = 0; written < bytes; ) {
      const n = Math.min(chunk.length, bytes - written);
      randomFillSync(chunk, 0, n);
      let off = 0;
      while (off < n) off += (await handle.write(chunk, off, n - off, written + off)).bytesWritten;
      written += n;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** sha256 of a file, hex. */
export async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), hash);
  return hash.digest('hex');
}

/** Regular files below `dir`, at any depth. */
export async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).length;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((r) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      r(true);
    });
    socket.once('error', () => r(false));
  });
}

// ---------------------------------------------------------------------------------------------
// Helper services (reference servers) killed at clean-up

export interface Service {
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Spawn a long-running helper that is killed at clean-up (and if this process exits first). */
export function service(command: string, args: string[], options: { cwd?: string } = {}): Service {
  const child = spawn(command, args, { cwd: options.cwd ?? PROJECT_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', kill);
  const stop = async () => {
    process.off('exit', kill);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(kill, 5000);
    await exited;
    clearTimeout(timer);
  };
  onCleanup(stop);
  return { child, output: () => output, stop };
}

// ---------------------------------------------------------------------------------------------
// The ferry server under test

export interface Envelope<T> {
  code: number;
  message: string;
  data: T;
}

/** The fields of AList's task view the benchmarks read. */
export interface TaskView {
  id: string;
  state: string;
  error: string;
  end_time: string | null;
  total_bytes: number;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
  failed_files: number;
}

export interface Server {
  pid: number;
  origin: string;
  dataDir: string;
  /** Milliseconds from spawn until `/ping` answered. */
  startMs: number;
  /** `performance.now()` when the process was spawned. */
  spawnedAt: number;
  token: string;
  pool: Pool;
  memory(): Promise<{ hwmKb: number; rssKb: number }>;
  /** A request over the keep-alive pool; the body is read (JSON when asked) before resolving. */
  request(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>;
  json<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Envelope<T>>;
  /** POST that must answer code 200; returns `data`. */
  ok<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>;
  /** Poll a task's `info` until it is done; throws when it does not succeed. */
  waitTask(
    kind: string,
    tid: string,
    options?: { timeoutMs?: number; intervalMs?: number },
  ): Promise<TaskView>;
  /** SIGTERM, then SIGKILL after 15 s. */
  stop(): Promise<void>;
}

let compiledEntry: string | null = null;

/** Run every later server from this compiled entry point instead of `--import tsx src/cli.ts`. */
export function useCompiledServer(entry: string): void {
  compiledEntry = entry;
}

/** How the servers run, for the RSS figures' labels. */
export function loaderNote(): string {
  return compiledEntry ? 'bundled JS, no tsx' : 'tsx loader included';
}

/** Build the server as `npm run build` does (`scripts/build.mjs`) into `outDir`; returns its `cli.js`. */
export async function buildJs(outDir: string): Promise<string> {
  await run(process.execPath, [resolve(PROJECT_ROOT, 'scripts', 'build.mjs'), outDir], {
    timeoutMs: 180_000,
  });
  return resolve(outDir, 'cli.js');
}

export interface ServerOptions {
  dataDir: string;
  /** Command line: defaults to `node --import tsx src/cli.ts serve` in the project. */
  argv?: string[];
  env?: Record<string, string>;
  startTimeoutMs?: number;
}

/** Start `ferry serve` as a child process on a free port and log in as admin. */
export async function startServer(options: ServerOptions): Promise<Server> {
  const port = await freePort();
  // As `npm start` does: node with no options and no tuning in the environment of its own, so
  // the figures are a plain `node dist/cli.js serve`'s. Settings in this runner's environment
  // (UV_THREADPOOL_SIZE, MALLOC_*, NODE_OPTIONS) reach the server, to compare them.
  const env: NodeJS.ProcessEnv = {};
  // The caller's FERRY_* settings (a config file, a database URL) must not leak into the run.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FERRY_')) env[k] = v;
  // …but BENCH_FERRY_X=… is passed on as FERRY_X=…, to compare settings (e.g. SQLITE_SYNCHRONOUS).
  const passed: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (k.startsWith('BENCH_FERRY_') && v !== undefined) passed[k.slice('BENCH_'.length)] = v;
  Object.assign(env, {
    FERRY_DATA_DIR: options.dataDir,
    FERRY_PORT: String(port),
    FERRY_HOST: '127.0.0.1',
    FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
    FERRY_LOG_LEVEL: 'warn',
    ...passed,
    ...options.env,
  });
  // BENCH_SERVER_ENTRY runs another entry point (a patched copy of src, a build) in its place;
  // BENCH_SERVER_NODE_ARGS adds node options, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const argv = [
    ...nodeArgs,
    ...(options.argv ??
      (compiledEntry
        ? [compiledEntry, 'serve']
        : ['--import', 'tsx', process.env.BENCH_SERVER_ENTRY ?? 'src/cli.ts', 'serve'])),
  ];
  const started = now();
  const child = spawn(process.execPath, argv, { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  // BENCH_SERVER_LOG=<file> also appends the server's whole output there (e.g. with
  // BENCH_FERRY_LOG_LEVEL=info or BENCH_SERVER_NODE_ARGS=--trace-gc).
  const logFile = process.env.BENCH_SERVER_LOG;
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-8000);
    if (logFile) appendFileSync(logFile, d);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  exited.then(() => children.delete(child));
  if (!child.pid) throw new Error('could not spawn the ferry server');
  const pid = child.pid;
  const origin = `http://127.0.0.1:${port}`;
  const pool = new Pool(origin, { connections: 4, keepAliveTimeout: 60_000, pipelining: 1 });

  const deadline = Date.now() + (options.startTimeoutMs ?? 120_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`ferry server exited during start-up:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ferry server did not answer /ping in time:\n${output}`);
    }
    try {
      const res = await pool.request({ method: 'GET', path: '/ping', headersTimeout: 2000 });
      const text = await res.body.text();
      if (res.statusCode === 200 && text.includes('pong')) break;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  const startMs = now() - started;

  let token = '';
  const request: Server['request'] = async (method, path, body) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await pool.request({
      method,
      path,
      headers,
      ...(body !== undefined && { body: JSON.stringify(body) }),
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  };
  const json = async <T>(method: 'GET' | 'POST', path: string, body?: unknown) => {
    const res = await request(method, path, body);
    if (res.status !== 200)
      throw new Error(`${method} ${path}: HTTP ${res.status}: ${res.text.slice(0, 300)}`);
    return JSON.parse(res.text) as Envelope<T>;
  };
  const ok = async <T>(method: 'GET' | 'POST', path: string, body?: unknown) => {
    const env = await json<T>(method, path, body);
    if (env.code !== 200) throw new Error(`${method} ${path}: code ${env.code}: ${env.message}`);
    return env.data;
  };

  token = (
    await ok<{ token: string }>('POST', '/api/auth/login', { username: 'admin', password: ADMIN_PASSWORD })
  ).token;

  return {
    pid,
    origin,
    dataDir: options.dataDir,
    startMs,
    spawnedAt: started,
    token,
    pool,
    memory: () => memoryOf(pid),
    request,
    json,
    ok,
    async waitTask(kind, tid, waitOptions = {}) {
      const deadline = Date.now() + (waitOptions.timeoutMs ?? 300_000);
      for (;;) {
        const [task] = await ok<TaskView[]>('POST', `/api/task/${kind}/info?tid=${encodeURIComponent(tid)}`);
        if (!task) throw new Error(`task ${tid} vanished`);
        if (task.state === 'succeeded') return task;
        if (task.state === 'failed' || task.state === 'canceled')
          throw new Error(`task ${tid} ${task.state}: ${task.error}`);
        if (Date.now() > deadline) throw new Error(`task ${tid} still ${task.state} after the timeout`);
        await sleep(waitOptions.intervalMs ?? 20);
      }
    },
    async stop() {
      await pool.close().catch(() => undefined);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Remove a directory tree (ignoring a missing one). */
export async function remove(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}
