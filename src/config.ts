import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FerryError } from './errors.ts';

/** Task kinds the engine knows; each has its own worker limit and retry budget. */
export const TASK_KINDS = [
  'upload',
  'copy',
  'move',
  'delete',
  'offline_download',
  'offline_download_transfer',
  'decompress',
  'decompress_upload',
  'sync',
] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

/** The two forms of AList's API ferry speaks (see `api/alist/flavour.ts`). */
export const ALIST_FLAVOURS = ['seed', 'current'] as const;
export type AlistFlavour = (typeof ALIST_FLAVOURS)[number];

export interface MountConfig {
  mount_path: string;
  driver: string;
  /** Driver settings, as AList's `addition` (object or JSON string). */
  addition: Record<string, unknown> | string;
}

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /**
   * Where tasks keep their work in progress: upload spools, offline downloads' partial files,
   * decompress areas (`FERRY_STAGING_DIR`, default the data directory). Nodes sharing PostgreSQL
   * should point it at one path every node sees, so that a node taking over a task of a dead one
   * continues its partial work instead of starting over.
   */
  stagingDir: string;
  /** Password of `admin` set on first start; generated and printed once when absent. */
  adminPassword: string | undefined;
  /** `sqlite:<file>` (default `<dataDir>/ferry.db`) or `postgres://…`. */
  databaseUrl: string;
  /** SQLite `synchronous` pragma: FULL survives power loss, NORMAL only process crashes. */
  sqliteSynchronous: 'FULL' | 'NORMAL';
  /**
   * Whether a task flushes the files it writes to disk (fsync, or one syncfs for many) before it
   * succeeds. true: a succeeded task's files survive a power loss. false: they are left to the
   * operating system to write back, as `cp`, `rclone` and AList do, which survives a crash or
   * `kill -9` of ferry but not of the machine. Where a task deletes the only other copy — a move's
   * source, an upload's spool, a transfer's download — the files are flushed before that either way.
   */
  syncFiles: boolean;
  logLevel: string;
  /** Token lifetime in hours. */
  tokenExpiresHours: number;
  /** Whether requests without a token act as the built-in guest. */
  guestEnabled: boolean;
  /**
   * How the AList routes at the root answer where the seed and today's AList differ
   * (`api/alist/flavour.ts`): `seed` (the contract, default) or `current`.
   */
  alistCompat: AlistFlavour;
  /** Serve the OpenList web UI at `/`. */
  webUi: boolean;
  tasks: {
    workers: Record<TaskKind, number>;
    maxRetry: Record<TaskKind, number>;
    /** First retry delay; doubles each attempt up to `retryMaxDelayMs`. */
    retryBaseDelayMs: number;
    retryMaxDelayMs: number;
    leaseMs: number;
    /** How often a running task's progress is written to the store at most. */
    progressIntervalMs: number;
    /** Finished tasks older than this are deleted by the background sweep. */
    retentionHours: number;
    sweepIntervalMs: number;
    /** How often the runner polls the store for runnable tasks and cancel flags. */
    pollIntervalMs: number;
    /** Most per-item failures kept on one directory task. */
    maxItemFailures: number;
    /**
     * A task whose server stopped under it this many times is failed (`E_INTERRUPTED`) instead
     * of being resumed again: it may be what crashes the server. 0: resumed however often.
     */
    maxInterruptions: number;
  };
  /** Mounts created on first start (besides `/local`). */
  mounts: MountConfig[];
  /** SCNet efile dialect: per-user request rate limit (token bucket; over it: code 911048). */
  efile: { ratePerSecond: number; rateBurst: number };
  offlineDownload: OfflineDownloadConfig;
  /** Limits of one extraction (zip bombs); counted on the bytes actually written, not headers. */
  archive: ArchiveLimits;
  webhooks: WebhooksConfig;
  metrics: MetricsConfig;
}

/** Webhook deliveries (`/api/admin/webhook/*`): timeouts and retries. */
export interface WebhooksConfig {
  /** One attempt's limit, connect to last byte of the answer; past it the attempt failed. */
  timeoutMs: number;
  /** First retry delay; doubles each attempt up to `retryMaxDelayMs`, with random jitter. */
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  /** How long a delivery is retried before it is marked failed. */
  retryWindowMs: number;
  /** How often each node looks for due deliveries (new ones made on this node go at once). */
  pollIntervalMs: number;
  /** Attempts one node sends at once. */
  concurrency: number;
  /** Delivered and failed deliveries (and their log) are deleted this long after their event. */
  retentionHours: number;
}

/** `GET /metrics`. */
export interface MetricsConfig {
  /** When set, `/metrics` requires `Authorization: Bearer <token>`. */
  token: string;
}

export interface ArchiveLimits {
  /** Most bytes one extraction may write. */
  maxTotalBytes: number;
  /** Most entries (files, folders, links) one archive may hold. */
  maxEntries: number;
  /** Most bytes written per byte of archive, checked once `ratioGraceBytes` are written. */
  maxRatio: number;
  /** Bytes written before the ratio counts, so tiny archives of small files pass. */
  ratioGraceBytes: number;
}

/** Offline download (`/api/fs/add_offline_download`): tools, URL rules and limits. */
export interface OfflineDownloadConfig {
  /** Largest file SimpleHttp fetches, in bytes; 0 = no limit. */
  maxBytes: number;
  /** Redirects SimpleHttp follows per request (each hop's address is checked again). */
  maxRedirects: number;
  /** SimpleHttp: connect and response-header timeout. */
  connectTimeoutMs: number;
  /** SimpleHttp: longest silence while the body streams before the attempt fails (and is retried). */
  idleTimeoutMs: number;
  /**
   * When non-empty, only these hosts may be fetched: host names (`example.com` also matches its
   * subdomains), IP addresses or CIDR ranges (`10.0.0.0/8`). Checked on the resolved address.
   */
  allowHosts: string[];
  /** Never fetched, whatever `allowHosts` says; same spelling. Defaults block link-local and cloud metadata. */
  denyHosts: string[];
  /**
   * SimpleHttp's proxy for http:// URLs (`http://[user:password@]host:port`; empty: none), from
   * `http_proxy`/`HTTP_PROXY` as curl reads it (`https://` proxies work too). Through a proxy the
   * proxy resolves the target, so `denyHosts`/`allowHosts` can only check its name and literal
   * addresses, not where the name points.
   */
  httpProxy: string;
  /** The same for https:// URLs (a CONNECT tunnel), from `https_proxy`/`HTTPS_PROXY`. */
  httpsProxy: string;
  /**
   * Hosts reached without the proxy, as curl's `no_proxy`/`NO_PROXY`: `*` for all, names (also
   * covering their subdomains; a leading `.` or `*.` is ignored), IP addresses and CIDR ranges
   * (matched against literal addresses in URLs only).
   */
  noProxy: string[];
  aria2: {
    /** JSON-RPC URL of a running aria2 (`http://host:6800/jsonrpc`); empty = ferry starts its own `aria2c`. */
    rpcUrl: string;
    /** `--rpc-secret` of that aria2 (ferry's own aria2c gets a random one). */
    secret: string;
    /** The aria2c program ferry starts when `rpcUrl` is empty. */
    binary: string;
    /** Options given with every download (`aria2.addUri` options, e.g. `{"split": "4"}`). */
    options: Record<string, string>;
  };
}

const DEFAULT_WORKERS: Record<TaskKind, number> = {
  upload: 4,
  copy: 8,
  move: 8,
  delete: 4,
  offline_download: 4,
  offline_download_transfer: 2,
  decompress: 2,
  decompress_upload: 2,
  sync: 2,
};

const DEFAULT_MAX_RETRY: Record<TaskKind, number> = {
  upload: 3,
  copy: 3,
  move: 3,
  delete: 3,
  offline_download: 3,
  offline_download_transfer: 3,
  decompress: 1,
  decompress_upload: 3,
  sync: 3,
};

type Env = Record<string, string | undefined>;

/**
 * Build the one validated config: defaults, then the JSON file named by `FERRY_CONFIG` (or
 * `options.file`), then `FERRY_*` environment variables. Nothing else in ferry reads the
 * environment. Throws `E_BAD_REQUEST` with the offending key for invalid values.
 */
export async function loadConfig(
  env: Env = process.env,
  overrides: DeepPartial<Config> = {},
): Promise<Config> {
  const fromFile = env.FERRY_CONFIG ? await readConfigFile(env.FERRY_CONFIG) : {};
  const merged = deepMerge(deepMerge(defaults(), fromFile), overrides) as Config;
  applyEnv(merged, env);
  merged.dataDir = resolve(merged.dataDir);
  merged.stagingDir = resolve(merged.stagingDir || merged.dataDir);
  if (!merged.databaseUrl) merged.databaseUrl = `sqlite:${resolve(merged.dataDir, 'ferry.db')}`;
  validate(merged);
  return merged;
}

function defaults(): Config {
  return {
    host: '0.0.0.0',
    port: 5244,
    dataDir: './data',
    stagingDir: '',
    adminPassword: undefined,
    databaseUrl: '',
    sqliteSynchronous: 'FULL',
    syncFiles: true,
    logLevel: 'info',
    tokenExpiresHours: 48,
    guestEnabled: false,
    alistCompat: 'seed',
    webUi: true,
    tasks: {
      workers: { ...DEFAULT_WORKERS },
      maxRetry: { ...DEFAULT_MAX_RETRY },
      retryBaseDelayMs: 1000,
      retryMaxDelayMs: 60_000,
      leaseMs: 30_000,
      progressIntervalMs: 500,
      retentionHours: 24,
      sweepIntervalMs: 60_000,
      pollIntervalMs: 250,
      maxItemFailures: 1000,
      maxInterruptions: 3,
    },
    mounts: [],
    efile: { ratePerSecond: 20, rateBurst: 40 },
    archive: {
      maxTotalBytes: 64 * 1024 ** 3,
      maxEntries: 1_000_000,
      maxRatio: 1000,
      ratioGraceBytes: 16 * 1024 ** 2,
    },
    offlineDownload: {
      maxBytes: 0,
      maxRedirects: 5,
      connectTimeoutMs: 30_000,
      idleTimeoutMs: 60_000,
      allowHosts: [],
      // Link-local (where cloud metadata answers), and the metadata hosts clouds publish by name.
      denyHosts: [
        '169.254.0.0/16',
        'fe80::/10',
        '100.100.100.200',
        'fd00:ec2::254',
        'metadata.google.internal',
      ],
      httpProxy: '',
      httpsProxy: '',
      noProxy: [],
      aria2: { rpcUrl: '', secret: '', binary: 'aria2c', options: {} },
    },
    webhooks: {
      timeoutMs: 10_000,
      retryBaseDelayMs: 10_000,
      retryMaxDelayMs: 60 * 60 * 1000,
      retryWindowMs: 24 * 60 * 60 * 1000,
      pollIntervalMs: 1000,
      concurrency: 8,
      retentionHours: 7 * 24,
    },
    metrics: { token: '' },
  };
}

function applyEnv(config: Config, env: Env): void {
  if (env.FERRY_HOST) config.host = env.FERRY_HOST;
  if (env.FERRY_PORT) config.port = toInt('FERRY_PORT', env.FERRY_PORT);
  if (env.FERRY_DATA_DIR) config.dataDir = env.FERRY_DATA_DIR;
  if (env.FERRY_STAGING_DIR) config.stagingDir = env.FERRY_STAGING_DIR;
  if (env.FERRY_ADMIN_PASSWORD) config.adminPassword = env.FERRY_ADMIN_PASSWORD;
  if (env.FERRY_DATABASE_URL) config.databaseUrl = env.FERRY_DATABASE_URL;
  if (env.FERRY_LOG_LEVEL) config.logLevel = env.FERRY_LOG_LEVEL;
  if (env.FERRY_SQLITE_SYNCHRONOUS) config.sqliteSynchronous = env.FERRY_SQLITE_SYNCHRONOUS as 'FULL';
  if (env.FERRY_SYNC_FILES) config.syncFiles = toBool('FERRY_SYNC_FILES', env.FERRY_SYNC_FILES);
  if (env.FERRY_ALIST_COMPAT) config.alistCompat = env.FERRY_ALIST_COMPAT as AlistFlavour;
  if (env.FERRY_WEB_UI) config.webUi = toBool('FERRY_WEB_UI', env.FERRY_WEB_UI);
  if (env.FERRY_RETENTION_HOURS) config.tasks.retentionHours = Number(env.FERRY_RETENTION_HOURS);
  if (env.FERRY_LEASE_MS) config.tasks.leaseMs = toInt('FERRY_LEASE_MS', env.FERRY_LEASE_MS);
  if (env.FERRY_ARCHIVE_MAX_BYTES)
    config.archive.maxTotalBytes = toInt('FERRY_ARCHIVE_MAX_BYTES', env.FERRY_ARCHIVE_MAX_BYTES);
  if (env.FERRY_ARCHIVE_MAX_ENTRIES)
    config.archive.maxEntries = toInt('FERRY_ARCHIVE_MAX_ENTRIES', env.FERRY_ARCHIVE_MAX_ENTRIES);
  if (env.FERRY_ARCHIVE_MAX_RATIO) config.archive.maxRatio = Number(env.FERRY_ARCHIVE_MAX_RATIO);
  const od = config.offlineDownload;
  if (env.FERRY_OFFLINE_MAX_BYTES)
    od.maxBytes = toInt('FERRY_OFFLINE_MAX_BYTES', env.FERRY_OFFLINE_MAX_BYTES);
  if (env.FERRY_OFFLINE_ALLOW_HOSTS) od.allowHosts = list(env.FERRY_OFFLINE_ALLOW_HOSTS);
  if (env.FERRY_OFFLINE_DENY_HOSTS) od.denyHosts = list(env.FERRY_OFFLINE_DENY_HOSTS);
  // The proxy variables every HTTP client reads, lower case first as curl does. ferry is no CGI
  // program, so an upper-case HTTP_PROXY cannot come from a request header ("httpoxy"): curl's
  // reason to ignore it does not hold here, and it is read too.
  const proxyVar = (name: string) => env[name.toLowerCase()] || env[name.toUpperCase()];
  const httpProxy = proxyVar('http_proxy');
  const httpsProxy = proxyVar('https_proxy');
  const noProxy = proxyVar('no_proxy');
  if (httpProxy) od.httpProxy = httpProxy;
  if (httpsProxy) od.httpsProxy = httpsProxy;
  if (noProxy) od.noProxy = list(noProxy);
  if (env.FERRY_ARIA2_RPC_URL) od.aria2.rpcUrl = env.FERRY_ARIA2_RPC_URL;
  if (env.FERRY_ARIA2_SECRET) od.aria2.secret = env.FERRY_ARIA2_SECRET;
  if (env.FERRY_ARIA2_BINARY) od.aria2.binary = env.FERRY_ARIA2_BINARY;
  if (env.FERRY_METRICS_TOKEN) config.metrics.token = env.FERRY_METRICS_TOKEN;
  const wh = config.webhooks;
  if (env.FERRY_WEBHOOK_TIMEOUT_MS)
    wh.timeoutMs = toInt('FERRY_WEBHOOK_TIMEOUT_MS', env.FERRY_WEBHOOK_TIMEOUT_MS);
  if (env.FERRY_WEBHOOK_RETRY_BASE_MS)
    wh.retryBaseDelayMs = toInt('FERRY_WEBHOOK_RETRY_BASE_MS', env.FERRY_WEBHOOK_RETRY_BASE_MS);
  if (env.FERRY_WEBHOOK_RETRY_WINDOW_MS)
    wh.retryWindowMs = toInt('FERRY_WEBHOOK_RETRY_WINDOW_MS', env.FERRY_WEBHOOK_RETRY_WINDOW_MS);
}

/** A comma-separated env value as a list (blanks dropped). */
function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function validate(config: Config): void {
  const bad = (key: string, why: string): never => {
    throw new FerryError('E_BAD_REQUEST', `config ${key}: ${why}`);
  };
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) bad('port', 'not a port');
  if (!['FULL', 'NORMAL'].includes(config.sqliteSynchronous)) bad('sqliteSynchronous', 'FULL or NORMAL');
  if (typeof config.syncFiles !== 'boolean') bad('syncFiles', 'true or false');
  if (!ALIST_FLAVOURS.includes(config.alistCompat)) bad('alistCompat', 'seed or current');
  if (typeof config.webUi !== 'boolean') bad('webUi', 'true or false');
  for (const kind of TASK_KINDS) {
    const workers = config.tasks.workers[kind];
    if (!Number.isInteger(workers) || workers < 0 || workers > 256) bad(`tasks.workers.${kind}`, '0..256');
    const retries = config.tasks.maxRetry[kind];
    if (!Number.isInteger(retries) || retries < 0 || retries > 100) bad(`tasks.maxRetry.${kind}`, '0..100');
  }
  for (const key of ['leaseMs', 'progressIntervalMs', 'pollIntervalMs', 'sweepIntervalMs'] as const) {
    if (!(config.tasks[key] > 0)) bad(`tasks.${key}`, 'must be positive');
  }
  if (!(config.tasks.retentionHours >= 0)) bad('tasks.retentionHours', 'must be >= 0');
  const interruptions = config.tasks.maxInterruptions;
  if (!Number.isInteger(interruptions) || interruptions < 0) bad('tasks.maxInterruptions', 'an integer >= 0');
  if (!Array.isArray(config.mounts)) bad('mounts', 'must be an array');
  if (!(config.efile.ratePerSecond > 0) || !(config.efile.rateBurst >= 1))
    bad('efile', 'ratePerSecond > 0, rateBurst >= 1');
  const od = config.offlineDownload;
  if (!Number.isInteger(od.maxBytes) || od.maxBytes < 0) bad('offlineDownload.maxBytes', 'integer >= 0');
  if (!Number.isInteger(od.maxRedirects) || od.maxRedirects < 0 || od.maxRedirects > 20)
    bad('offlineDownload.maxRedirects', '0..20');
  for (const key of ['connectTimeoutMs', 'idleTimeoutMs'] as const)
    if (!(od[key] > 0)) bad(`offlineDownload.${key}`, 'must be positive');
  for (const key of ['allowHosts', 'denyHosts'] as const) {
    const hosts = od[key];
    if (!Array.isArray(hosts) || !hosts.every((h) => typeof h === 'string' && h !== ''))
      bad(`offlineDownload.${key}`, 'must be an array of host names, addresses or CIDR ranges');
  }
  for (const key of ['httpProxy', 'httpsProxy'] as const)
    if (typeof od[key] !== 'string' || (od[key] !== '' && !isProxyUrl(od[key])))
      bad(`offlineDownload.${key}`, 'an http:// or https:// proxy URL, or empty');
  if (!Array.isArray(od.noProxy) || !od.noProxy.every((h) => typeof h === 'string'))
    bad('offlineDownload.noProxy', 'must be an array of host names, addresses or CIDR ranges');
  if (typeof od.aria2.rpcUrl !== 'string' || typeof od.aria2.secret !== 'string')
    bad('offlineDownload.aria2', 'rpcUrl and secret are strings');
  if (
    !isPlainObject(od.aria2.options) ||
    !Object.values(od.aria2.options).every((v) => typeof v === 'string')
  )
    bad('offlineDownload.aria2.options', 'an object of string values');
  for (const key of ['maxTotalBytes', 'maxEntries', 'maxRatio'] as const) {
    if (!(config.archive[key] > 0)) bad(`archive.${key}`, 'must be positive');
  }
  if (!(config.archive.ratioGraceBytes >= 0)) bad('archive.ratioGraceBytes', 'must be >= 0');
  const wh = config.webhooks;
  for (const key of [
    'timeoutMs',
    'retryBaseDelayMs',
    'retryMaxDelayMs',
    'retryWindowMs',
    'pollIntervalMs',
  ] as const)
    if (!Number.isInteger(wh[key]) || wh[key] <= 0) bad(`webhooks.${key}`, 'a positive integer (ms)');
  if (!Number.isInteger(wh.concurrency) || wh.concurrency < 1 || wh.concurrency > 256)
    bad('webhooks.concurrency', '1..256');
  if (!(wh.retentionHours > 0)) bad('webhooks.retentionHours', 'must be positive');
  if (typeof config.metrics.token !== 'string') bad('metrics.token', 'a string (empty: no token)');
}

async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new FerryError('E_BAD_REQUEST', `cannot read config file ${path}`, { cause: err });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (!isPlainObject(parsed)) throw new Error('not an object');
    return parsed;
  } catch (err) {
    throw new FerryError('E_BAD_REQUEST', `config file ${path} is not a JSON object`, { cause: err });
  }
}

function toInt(key: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new FerryError('E_BAD_REQUEST', `${key} must be an integer`);
  return n;
}

function toBool(key: string, value: string): boolean {
  if (['true', '1'].includes(value)) return true;
  if (['false', '0'].includes(value)) return false;
  throw new FerryError('E_BAD_REQUEST', `${key} must be true or false`);
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/**
 * An http(s) proxy as curl takes it: a URL, or `host:port` alone, for which curl assumes http://
 * (SimpleHttp does the same, see `proxyUrl` in src/download/http-dispatchers.ts).
 */
function isProxyUrl(value: string): boolean {
  try {
    const url = new URL(value.includes('://') ? value : `http://${value}`);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(base: unknown, patch: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(patch)) return patch === undefined ? base : patch;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) out[key] = deepMerge(base[key], value);
  return out;
}
