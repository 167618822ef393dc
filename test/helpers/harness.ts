import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import { buildApp } from '../../src/app.ts';
import { type Config, type DeepPartial, loadConfig } from '../../src/config.ts';
import { type Core, startCore } from '../../src/core.ts';

export const ADMIN_PASSWORD = 'admin-test-password';

/** A task as the AList task API shows it (`info`), with the fields tests look at. */
export interface TaskView {
  id: string;
  name: string;
  state: string;
  status: string;
  error: string;
  progress: number;
  retries: number;
  creator: string;
  total_bytes: number;
  processed_bytes: number;
  total_files: number;
  processed_files: number;
  failed_files: number;
}

/** A ferry core + app on a fresh temp data dir, driven through `inject` (no port). */
export interface Harness {
  app: FastifyInstance;
  core: Core;
  dataDir: string;
  /** Token of `admin`. */
  adminToken: string;
  /** Call the API as `token` (or with no token); JSON bodies are sent as JSON. */
  call(
    method: InjectOptions['method'],
    url: string,
    options?: { token?: string | null; body?: unknown; headers?: Record<string, string> },
  ): Promise<LightMyRequestResponse>;
  /** Call and parse the AList envelope. */
  json<T = unknown>(
    method: InjectOptions['method'],
    url: string,
    options?: { token?: string | null; body?: unknown; headers?: Record<string, string> },
  ): Promise<{ code: number; message: string; data: T }>;
  /** Create a general user with every file permission; returns its token. */
  user(name: string, extra?: Record<string, unknown>): Promise<string>;
  login(name: string, password: string): Promise<string>;
  /** `PUT /api/fs/put` of `data` to `path` as a task (admin); the reply's envelope. */
  putAsTask(
    path: string,
    data: Buffer,
  ): Promise<{ code: number; message: string; data: { task: { id: string; type: string } } }>;
  /** `info` of the task `id` of `type` (as admin), or undefined when it does not exist. */
  task(type: string, id: string): Promise<TaskView | undefined>;
  /** Poll `info` (every 50 ms) until the task is succeeded, failed or canceled; returns it. */
  finished(type: string, id: string, timeoutMs?: number): Promise<TaskView>;
  close(): Promise<void>;
}

export async function startHarness(overrides: DeepPartial<Config> = {}): Promise<Harness> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ferry-test-'));
  const config = await loadConfig(
    { FERRY_DATA_DIR: dataDir, FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD },
    {
      sqliteSynchronous: 'NORMAL',
      ...overrides,
      tasks: { pollIntervalMs: 50, progressIntervalMs: 100, ...overrides.tasks },
    },
  );
  const core = await startCore(config, pino({ level: process.env.FERRY_TEST_LOG ?? 'silent' }));
  const app = await buildApp(core);
  await app.ready();

  const call: Harness['call'] = (method, url, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = options.token;
    const isJson =
      options.body !== undefined && !Buffer.isBuffer(options.body) && typeof options.body !== 'string';
    return app.inject({
      method,
      url,
      headers: isJson ? { 'content-type': 'application/json', ...headers } : headers,
      ...(options.body !== undefined && {
        payload: isJson ? JSON.stringify(options.body) : (options.body as string | Buffer),
      }),
    });
  };
  const json: Harness['json'] = async (method, url, options) => {
    const res = await call(method, url, options);
    return JSON.parse(res.body);
  };
  const login = async (username: string, password: string) => {
    const res = await json<{ token: string }>('POST', '/api/auth/login', { body: { username, password } });
    if (res.code !== 200) throw new Error(`login ${username} failed: ${res.message}`);
    return res.data.token;
  };
  const adminToken = await login('admin', ADMIN_PASSWORD);
  const task: Harness['task'] = async (type, id) =>
    (await json<TaskView[]>('POST', `/api/task/${type}/info?tid=${id}`, { token: adminToken })).data?.[0];
  return {
    app,
    core,
    dataDir,
    adminToken,
    call,
    json,
    login,
    async putAsTask(path, data) {
      const res = await call('PUT', '/api/fs/put', {
        token: adminToken,
        body: data,
        headers: {
          'file-path': encodeURIComponent(path),
          'as-task': 'true',
          'content-type': 'application/octet-stream',
        },
      });
      return JSON.parse(res.body);
    },
    async user(name, extra = {}) {
      const res = await json('POST', '/api/admin/user/create', {
        token: adminToken,
        body: { username: name, password: `${name}-pw`, role: 0, permission: 0xfc, ...extra },
      });
      if (res.code !== 200) throw new Error(`create user ${name}: ${res.message}`);
      return login(name, `${name}-pw`);
    },
    task,
    finished: (type, id, timeoutMs = 60_000) =>
      waitFor(
        async () => {
          const t = await task(type, id);
          return t && isFinished(t.state) ? t : undefined;
        },
        timeoutMs,
        `${type} task ${id} to finish`,
        50,
      ),
    async close() {
      await app.close();
      await core.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A task state that will not change any more: the seed's done states, spelled out here rather
 * than taken from src, so the tests hold the server to the contract and not to itself.
 */
export function isFinished(state: string): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'canceled';
}

/** Poll `check` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  what = 'condition',
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
