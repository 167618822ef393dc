import type { Logger } from 'pino';
import { FerryError } from '../errors.ts';
import type { MountStore, NewStorage, StorageRecord } from '../store/mount-store.ts';

/** A storage as created or updated (the dialects' input for `create`/`update`). */
export type { NewStorage };

import type { Driver } from './driver.ts';
import { isWithin, normalizePath, relativeTo } from './paths.ts';

/** Builds a driver from AList's `addition` settings. Throws E_STORAGE_CONFIG for bad settings. */
export type DriverFactory = (
  addition: Record<string, unknown>,
  context: { dataDir: string },
) => Promise<Driver>;

export interface Mount {
  record: StorageRecord;
  driver: Driver | null;
  /** Why the driver could not start (AList's storage `status`); 'work' when it runs. */
  status: string;
}

/** A virtual path resolved to the mount that holds it. */
export interface Resolved {
  mount: Mount;
  driver: Driver;
  /** Path inside the driver (`/` for the mount root). */
  path: string;
  /** The mount's path in the virtual tree, e.g. `/local`. */
  mountPath: string;
}

/** How often a node on a shared store looks for mounts changed by the others. */
const SHARED_SYNC_MS = 2000;

/**
 * The virtual file tree: storages mounted at paths, each backed by a driver. Resolves a
 * virtual path to (driver, inner path) by the longest mount prefix; lists the virtual folders
 * above mounts. Mount records live in the store; drivers live here while mounted.
 *
 * On a store several nodes share (PostgreSQL), another node may create, change or delete a
 * mount: `sync()` brings this registry in line with the store. It runs every 2 s and, through
 * the runner, right after tasks are claimed, so a task created just after its mount runs on
 * whichever node claims it. Changes here and syncs take turns (`exclusive`).
 */
export class MountRegistry {
  private mounts: Mount[] = [];
  /** The end of the last change or sync: the next one starts after it. */
  private turn: Promise<unknown> = Promise.resolve();
  private syncing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: MountStore,
    private readonly factories: ReadonlyMap<string, DriverFactory>,
    private readonly dataDir: string,
    private readonly log: Logger,
    /** True when other processes share the store (PostgreSQL): their changes are synced in. */
    private readonly shared = false,
  ) {}

  /** Start every stored mount. A mount whose driver fails stays listed with its error as status. */
  async load(): Promise<void> {
    await this.sync();
    if (this.shared) {
      this.timer = setInterval(() => void this.syncShared(), SHARED_SYNC_MS);
      this.timer.unref();
    }
  }

  /**
   * On a shared store, `sync()` (calls while one runs share it; its failure is logged, the next
   * call tries again), waited for `waitMs` at most (the sync goes on); with one process per
   * store, nothing: every change went through here.
   */
  async syncShared(waitMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (!this.shared) return;
    this.syncing ??= this.sync()
      .catch((err) => this.log.warn({ err }, 'could not sync the mounts with the store'))
      .finally(() => {
        this.syncing = null;
      });
    if (waitMs === Number.POSITIVE_INFINITY) return this.syncing;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([this.syncing, waited]);
    clearTimeout(timer);
  }

  /**
   * Make the mounts those of the store: start the new ones, restart the changed ones (another
   * `modified`, driver or settings), stop the removed ones.
   */
  sync(): Promise<void> {
    return this.exclusive(async () => {
      const records = await this.store.list();
      const current = new Map(records.map((r) => [r.id, r]));
      for (const mount of this.mounts) {
        const record = current.get(mount.record.id);
        if (record && sameRecord(record, mount.record)) continue;
        await mount.driver?.close().catch(() => undefined);
        if (record) Object.assign(mount, await this.start(record));
      }
      this.mounts = this.mounts.filter((m) => current.has(m.record.id));
      for (const record of records) if (!this.byId(record.id)) this.mounts.push(await this.start(record));
      this.sort();
    });
  }

  all(): readonly Mount[] {
    return this.mounts;
  }

  byId(id: number): Mount | undefined {
    return this.mounts.find((m) => m.record.id === id);
  }

  async create(input: NewStorage): Promise<Mount> {
    const record = this.validate(input);
    const taken = () => new FerryError('E_EXISTS', `a storage is already mounted at ${record.mountPath}`);
    if (this.mounts.some((m) => m.record.mountPath === record.mountPath)) throw taken();
    // Start first: a driver with wrong settings is refused before anything is stored.
    const probe = record.disabled ? null : await this.makeDriver(record);
    const mount = await this.exclusive(async () => {
      const stored = await this.store.insert(record);
      if (!stored) return null;
      const mount: Mount = { record: stored, driver: probe, status: probe ? 'work' : 'disabled' };
      this.mounts.push(mount);
      this.sort();
      return mount;
    });
    if (mount) return mount;
    // Another node mounted that path first.
    await probe?.close().catch(() => undefined);
    await this.syncShared();
    throw taken();
  }

  /**
   * Replace a storage's settings. The API never sends secrets back (they read as ''), so a client
   * that edits a storage sends '' for them: a secret left '' keeps its stored value.
   */
  async update(id: number, input: NewStorage): Promise<Mount> {
    const existing = this.byId(id);
    if (!existing) throw new FerryError('E_NOT_FOUND', 'storage not found');
    const record = this.validate(input);
    const next = parseAddition(record.addition);
    const stored = parseAddition(existing.record.addition);
    let kept = false;
    for (const [key, value] of Object.entries(next)) {
      if (value === '' && isSecretSetting(key) && typeof stored[key] === 'string' && stored[key] !== '') {
        next[key] = stored[key];
        kept = true;
      }
    }
    if (kept) record.addition = JSON.stringify(next);
    record.options ??= existing.record.options;
    if (this.mounts.some((m) => m !== existing && m.record.mountPath === record.mountPath)) {
      throw new FerryError('E_EXISTS', `a storage is already mounted at ${record.mountPath}`);
    }
    const driver = record.disabled ? null : await this.makeDriver(record);
    return this.exclusive(async () => {
      const saved = await this.store.update(id, record);
      if (!saved) {
        await driver?.close().catch(() => undefined);
        throw new FerryError('E_NOT_FOUND', 'storage not found');
      }
      await existing.driver?.close().catch(() => undefined);
      Object.assign(existing, { record: saved, driver, status: driver ? 'work' : 'disabled' });
      this.sort();
      return existing;
    });
  }

  async delete(id: number): Promise<void> {
    const existing = this.byId(id);
    if (!existing) throw new FerryError('E_NOT_FOUND', 'storage not found');
    await this.exclusive(async () => {
      await this.store.delete(id);
      this.mounts = this.mounts.filter((m) => m !== existing);
      await existing.driver?.close().catch(() => undefined);
    });
  }

  /**
   * AList's storage enable/disable. Disabling stores the flag and closes the driver: from then on
   * every path on the mount is refused (`E_NO_STORAGE`, "storage … is disabled") to requests and
   * to tasks alike, until it is enabled again. That error is unrecoverable, so a task that starts
   * or retries on the mount fails at once and can be retried once the storage is back. A task
   * already running keeps the driver it holds: a remote one fails on its next request (the driver
   * is closed, then the retry is refused); a Local one usually finishes, as closing a Local
   * driver ends nothing it uses. (Failing running tasks at once would need the runner to know which
   * mounts a task uses; AList does no better: it drops the driver under them.)
   * Enabling starts the driver first: one that cannot start leaves the storage disabled and the
   * error is thrown. `E_BAD_REQUEST` when the storage already is in that state (as AList
   * answers), `E_NOT_FOUND` for an unknown id.
   */
  async setDisabled(id: number, disabled: boolean): Promise<Mount> {
    const existing = this.byId(id);
    if (!existing) throw new FerryError('E_NOT_FOUND', 'storage not found');
    const { id: _id, modified: _modified, ...record } = existing.record;
    if (record.disabled === disabled) {
      throw new FerryError(
        'E_BAD_REQUEST',
        `storage ${record.mountPath} is already ${disabled ? 'disabled' : 'enabled'}`,
      );
    }
    return this.update(id, { ...record, disabled });
  }

  /**
   * AList's `load_all`: stop every driver and start each stored storage again, all at once (a
   * storage whose server was down comes back once it answers). This process only: on a shared
   * store the other nodes keep their drivers. A storage that cannot start is kept with its error
   * as `status`, as at start-up.
   */
  reloadAll(): Promise<void> {
    return this.exclusive(async () => {
      const records = await this.store.list();
      await Promise.allSettled(this.mounts.map((m) => m.driver?.close()));
      this.mounts = await Promise.all(records.map((r) => this.start(r)));
      this.sort();
    });
  }

  /** The mount holding `virtualPath` (already normalised). `E_NO_STORAGE` when none does. */
  resolve(virtualPath: string): Resolved {
    let best: Mount | undefined;
    for (const m of this.mounts) {
      if (
        isWithin(virtualPath, m.record.mountPath) &&
        (!best || m.record.mountPath.length > best.record.mountPath.length)
      ) {
        best = m;
      }
    }
    if (!best) throw new FerryError('E_NO_STORAGE', `no storage is mounted at ${virtualPath}`);
    if (!best.driver) {
      const mp = best.record.mountPath;
      // A disabled mount still owns its paths: falling through to a mount above it would read or
      // write the wrong storage.
      throw new FerryError(
        'E_NO_STORAGE',
        best.record.disabled ? `storage ${mp} is disabled` : `storage ${mp} is not working: ${best.status}`,
      );
    }
    return {
      mount: best,
      driver: best.driver,
      path: relativeTo(virtualPath, best.record.mountPath),
      mountPath: best.record.mountPath,
    };
  }

  /**
   * Names of virtual folders directly below `virtualPath` that lead to mounts (for listing `/`).
   * Disabled mounts are left out, as AList hides them.
   */
  virtualChildren(virtualPath: string): string[] {
    const names = new Set<string>();
    for (const m of this.mounts) {
      if (m.record.disabled) continue;
      const mp = m.record.mountPath;
      if (mp !== virtualPath && isWithin(mp, virtualPath)) {
        const rest = relativeTo(mp, virtualPath).split('/')[1];
        if (rest) names.add(rest);
      }
    }
    return [...names];
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.turn;
    await Promise.allSettled(this.mounts.map((m) => m.driver?.close()));
  }

  /** Run `change` after every change and sync started before it has ended. */
  private exclusive<T>(change: () => Promise<T>): Promise<T> {
    const result = this.turn.then(change);
    this.turn = result.catch(() => undefined);
    return result;
  }

  private validate(input: NewStorage): NewStorage {
    const mountPath = normalizePath(input.mountPath);
    if (mountPath === '/') throw new FerryError('E_STORAGE_CONFIG', 'a storage cannot be mounted at /');
    if (!this.factories.has(input.driver)) {
      throw new FerryError(
        'E_STORAGE_CONFIG',
        `unknown driver ${JSON.stringify(input.driver)}; known: ${[...this.factories.keys()].join(', ')}`,
      );
    }
    parseAddition(input.addition);
    return { ...input, mountPath };
  }

  private async start(record: StorageRecord): Promise<Mount> {
    if (record.disabled) return { record, driver: null, status: 'disabled' };
    try {
      return { record, driver: await this.makeDriver(record), status: 'work' };
    } catch (err) {
      this.log.error({ err, mount: record.mountPath }, 'storage failed to start');
      return { record, driver: null, status: err instanceof Error ? err.message : String(err) };
    }
  }

  private async makeDriver(record: NewStorage): Promise<Driver> {
    const factory = this.factories.get(record.driver);
    if (!factory) throw new FerryError('E_STORAGE_CONFIG', `unknown driver ${record.driver}`);
    return factory(parseAddition(record.addition), { dataDir: this.dataDir });
  }

  private sort(): void {
    this.mounts.sort(
      (a, b) => a.record.order - b.record.order || a.record.mountPath.localeCompare(b.record.mountPath),
    );
  }
}

function sameRecord(a: StorageRecord, b: StorageRecord): boolean {
  return (
    a.modified === b.modified &&
    a.mountPath === b.mountPath &&
    a.driver === b.driver &&
    a.addition === b.addition &&
    a.order === b.order &&
    a.remark === b.remark &&
    a.disabled === b.disabled &&
    JSON.stringify(a.options) === JSON.stringify(b.options)
  );
}

/** Keys in a driver's `addition` that hold secrets: never sent back by any API, never logged. */
const SECRET_SETTING = /password|secret|private_key|passphrase|session_token|token/i;

export function isSecretSetting(key: string): boolean {
  return SECRET_SETTING.test(key);
}

/** AList keeps driver settings as a JSON string in `addition`. */
export function parseAddition(addition: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(addition || '{}');
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new FerryError('E_STORAGE_CONFIG', 'addition must be a JSON object (as a string)', { cause: err });
  }
}
