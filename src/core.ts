import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { alistTask } from './api/alist/task-view.ts';
import { AuthService } from './auth/auth-service.ts';
import { LinkSigner } from './auth/link-signer.ts';
import type { Config } from './config.ts';
import { OfflineTools } from './download/offline-tools.ts';
import { FerryError } from './errors.ts';
import { FileService } from './files/file-service.ts';
import { TaskRequests } from './files/task-requests.ts';
import { JobService } from './jobs/job-service.ts';
import { jobOfRun } from './jobs/run-event.ts';
import { Metrics } from './metrics.ts';
import { settingCatalogue } from './settings/setting-catalogue.ts';
import { SiteSettings } from './settings/site-settings.ts';
import { LocalDriver } from './storage/local/local-driver.ts';
import { localRoot } from './storage/local/settings.ts';
import { type DriverFactory, MountRegistry } from './storage/mounts.ts';
import { openDatabase } from './store/database.ts';
import { JobStore } from './store/job-store.ts';
import { MountStore } from './store/mount-store.ts';
import { NodeStore } from './store/node-store.ts';
import { PgNotices } from './store/pg-notices.ts';
import { SettingStore } from './store/setting-store.ts';
import { SqlTaskStore } from './store/sql-task-store.ts';
import { countTasksByKindAndState } from './store/task-counts.ts';
import { UserStore } from './store/user-store.ts';
import { WebhookStore } from './store/webhook-store.ts';
import { TaskEvents } from './tasks/events.ts';
import { builtinKinds } from './tasks/kinds/index.ts';
import { NodeRegistry } from './tasks/nodes.ts';
import { TaskRelay } from './tasks/relay.ts';
import { Runner } from './tasks/runner.ts';
import { TaskService } from './tasks/service.ts';
import { removeFinishedSpools } from './tasks/spool-reconcile.ts';
import { FERRY_VERSION } from './version.ts';
import { WebhookDispatcher } from './webhooks/dispatcher.ts';
import { WebhookOutbox } from './webhooks/outbox.ts';
import { webhookHostPolicy } from './webhooks/target-policy.ts';
import { WebhookService } from './webhooks/webhook-service.ts';

/** Everything the HTTP layer and the CLI use, wired together. */
export interface Core {
  config: Config;
  log: Logger;
  auth: AuthService;
  /** Signs and checks the `sign` of download links (`/d`, `/p`). */
  links: LinkSigner;
  mounts: MountRegistry;
  /** Files as the dialects reach them: base paths and permissions checked in one place. */
  files: FileService;
  /** Requests that become tasks, checked against the files before any task exists. */
  requests: TaskRequests;
  tasks: TaskService;
  /** Saved and scheduled transfers (`/api/job/*`). */
  jobs: JobService;
  runner: Runner;
  /** This process as a node of the store, and the live nodes (`GET /api/admin/nodes`). */
  nodes: NodeRegistry;
  events: TaskEvents;
  /** Offline download tools (host policy, SimpleHttp, aria2). */
  offline: OfflineTools;
  /** Settings an admin changes at run time (site title, worker counts, …), stored and applied at once. */
  settings: SiteSettings;
  /** This node's Prometheus metrics (`GET /metrics`). */
  metrics: Metrics;
  /** Webhooks as the admin API manages them. */
  webhooks: WebhookService;
  /**
   * The webhook outbox: `enqueue(trx, event, payload)` writes an event's deliveries with the
   * transaction that records what it reports (task final states are wired in already).
   */
  webhookOutbox: WebhookOutbox;
  /** Stop workers (their tasks resume at next start), close storages and the database. */
  close(): Promise<void>;
}

/** How often a node sharing PostgreSQL with others reloads the settings. */
const SETTINGS_REFRESH_MS = 5000;

/**
 * Driver name (AList's) → factory. Remote drivers are imported on first mount: their libraries
 * (AWS SDK, ssh2, webdav) cost 15–25 MB of memory each, which a server without such a mount
 * should not pay.
 */
export function driverFactories(): Map<string, DriverFactory> {
  return new Map<string, DriverFactory>([
    ['Local', async (addition, { dataDir }) => LocalDriver.open(localRoot(addition, dataDir))],
    [
      'S3',
      async (addition) => {
        const { S3Driver, s3Settings } = await import('./storage/s3/s3-driver.ts');
        return S3Driver.open(s3Settings(addition));
      },
    ],
    [
      'SFTP',
      async (addition) => {
        const { SftpDriver, sftpSettings } = await import('./storage/sftp/sftp-driver.ts');
        return SftpDriver.open(sftpSettings(addition));
      },
    ],
    [
      'WebDav',
      async (addition) => {
        const { WebDavDriver, webdavSettings } = await import('./storage/webdav/webdav-driver.ts');
        return WebDavDriver.open(webdavSettings(addition));
      },
    ],
  ]);
}

/**
 * Open the data directory and start the engine. With SQLite the data directory belongs to one
 * process (a lock file says which), so tasks still marked running belonged to a dead process and
 * are queued again at once instead of waiting for their leases to expire.
 */
export async function startCore(
  config: Config,
  log: Logger,
  options: { runWorkers?: boolean } = {},
): Promise<Core> {
  await mkdir(join(config.stagingDir, 'spool'), { recursive: true });
  const sqlite = config.databaseUrl.startsWith('sqlite:');
  const releaseLock = sqlite ? await lockDataDir(config.dataDir) : async () => undefined;
  try {
    const database = await openDatabase(config.databaseUrl, { synchronous: config.sqliteSynchronous });
    const users = new UserStore(database.db);
    const auth = await AuthService.open(database.db, users, config.tokenExpiresHours);
    const links = await LinkSigner.open(database.db);
    const generated = await auth.ensureDefaultUsers(config.adminPassword);
    if (generated)
      log.warn(
        `created user admin with password ${generated} (shown once; change it with "ferry user passwd admin")`,
      );

    const mountStore = new MountStore(database.db);
    const mounts = new MountRegistry(mountStore, driverFactories(), config.dataDir, log, !sqlite);
    await mounts.load();
    await ensureDefaultMounts(mounts, config);

    const store = new SqlTaskStore(database);
    const metrics = new Metrics(() => countTasksByKindAndState(database.db));
    const webhookStore = new WebhookStore(database.db, database.dialect);
    const webhookPolicy = webhookHostPolicy(config.offlineDownload);
    const dispatcher = new WebhookDispatcher({
      store: webhookStore,
      policy: webhookPolicy,
      config: config.webhooks,
      log,
      counted: (outcome) => metrics.webhookDeliveries.inc({ outcome }),
      userAgent: `ferry/${FERRY_VERSION} (webhooks)`,
    });
    const webhookOutbox = new WebhookOutbox({
      // Webhooks show tasks as the seed's AList view: the documented contract, not a UI's flavour.
      taskView: (task) => ({ ...alistTask(task, 'seed') }),
      retryWindowMs: config.webhooks.retryWindowMs,
      // SQLite: one process, which clears the cache itself on every change; PostgreSQL: another
      // node's change is seen within a second.
      cacheMs: sqlite ? 60_000 : 1000,
      onEnqueued: () => dispatcher.wake(),
    });
    // A task's final state and its webhook deliveries commit together (the outbox); a job's run
    // adds its `job.run.finished` in the same transaction.
    store.onFinal = async (db, finished) => {
      await webhookOutbox.onFinal(db, finished);
      for (const task of finished) {
        const job = jobOfRun(task);
        if (job) await webhookOutbox.enqueueTask(db, 'job.run.finished', task, { job });
      }
    };
    const webhooks = new WebhookService({
      store: webhookStore,
      outbox: webhookOutbox,
      dispatcher,
      policy: webhookPolicy,
      retryWindowMs: config.webhooks.retryWindowMs,
    });
    const events = new TaskEvents();
    // Other nodes on the same PostgreSQL store hear of this node's task changes, and it of theirs.
    const notices = sqlite ? null : await PgNotices.open(database.db, config.databaseUrl, 'ferry_tasks', log);
    const relay = notices && new TaskRelay(notices, events, store, log);
    relay?.start();
    const offline = new OfflineTools(config.offlineDownload, config.stagingDir, log);
    const kinds = builtinKinds({ archive: config.archive, offline });
    const runner = new Runner({ store, events, mounts, kinds, config, log, metrics });
    const tasks = new TaskService(store, events, runner, kinds, config, log);
    const jobs = new JobService(
      new JobStore(database.db),
      store,
      tasks,
      events,
      mounts,
      auth,
      log,
      (outcome) => metrics.jobRuns.inc({ outcome }),
    );
    const nodes = new NodeRegistry(new NodeStore(database.db), runner, config.tasks.leaseMs, log);
    // Stored worker counts apply before the runner starts. Nodes sharing PostgreSQL reload the
    // settings every few seconds, so a change made through one reaches the others.
    const settings = await SiteSettings.open(
      new SettingStore(database.db),
      settingCatalogue(config),
      runner,
      log,
      {
        refreshMs: sqlite ? 0 : SETTINGS_REFRESH_MS,
      },
    );

    if (options.runWorkers !== false) {
      const requeued = await store.reclaimExpired(Date.now(), {
        all: sqlite,
        maxInterruptions: config.tasks.maxInterruptions,
      });
      if (requeued > 0) log.info({ requeued }, 'resuming tasks interrupted by the last shutdown');
      // Spools of uploads that succeeded just before the last process died.
      await removeFinishedSpools(config.stagingDir, store, { orphans: sqlite, log });
      await nodes.start();
      runner.start();
      tasks.startMaintenance();
      jobs.start();
      if (sqlite) await webhookStore.releaseClaims();
      dispatcher.start();
    }
    const files = new FileService(mounts, links, config.dataDir);
    return {
      config,
      log,
      auth,
      links,
      mounts,
      files,
      requests: new TaskRequests(files, offline.policy),
      tasks,
      jobs,
      runner,
      nodes,
      events,
      offline,
      settings,
      metrics,
      webhooks,
      webhookOutbox,
      async close() {
        settings.close();
        await jobs.stop();
        await dispatcher.stop();
        tasks.stopMaintenance();
        await runner.stop();
        await nodes.stop();
        await offline.close();
        await mounts.close();
        await relay?.stop();
        await notices?.close();
        await database.close();
        await releaseLock();
      },
    };
  } catch (err) {
    await releaseLock();
    throw err;
  }
}

async function ensureDefaultMounts(mounts: MountRegistry, config: Config): Promise<void> {
  const wanted = [
    { mount_path: '/local', driver: 'Local', addition: { root_folder_path: join(config.dataDir, 'files') } },
    ...config.mounts,
  ];
  for (const m of wanted) {
    if (mounts.all().some((existing) => existing.record.mountPath === m.mount_path)) continue;
    try {
      await mounts.create({
        mountPath: m.mount_path,
        driver: m.driver,
        addition: typeof m.addition === 'string' ? m.addition : JSON.stringify(m.addition),
        order: 0,
        remark: '',
        disabled: false,
      });
    } catch (err) {
      // Another node starting on the same store at the same moment mounted it first: theirs stands.
      if (!(err instanceof FerryError && err.code === 'E_EXISTS')) throw err;
    }
  }
}

/**
 * Take the data directory for this process: `ferry.lock` holds the owner's pid. A lock left by a
 * dead process is taken over; a live owner makes this start fail with a clear message.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = join(dataDir, 'ferry.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new FerryError('E_BAD_REQUEST', `data directory ${dataDir} is in use by process ${pid}`);
      }
      await rm(path, { force: true });
    }
  }
  throw new FerryError('E_INTERNAL', `could not lock ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
