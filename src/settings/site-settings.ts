import type { Logger } from 'pino';
import type { TaskKind } from '../config.ts';
import { FerryError } from '../errors.ts';
import type { SettingStore } from '../store/setting-store.ts';
import type { Runner } from '../tasks/runner.ts';
import { MAX_SETTING_LENGTH, type SettingDefinition } from './setting-catalogue.ts';

/** The settings as they are at one moment; a new snapshot (higher `revision`) after each change. */
export interface SettingsSnapshot {
  readonly revision: number;
  /** The value of a catalogue key (its default when nobody set it); '' for an unknown key. */
  get(key: string): string;
}

/** One change: a catalogue key and its new value. */
export interface SettingChange {
  key: string;
  value: unknown;
}

/**
 * The settings an admin changes at run time (the web UI's settings pages), over the catalogue
 * of `setting-catalogue.ts`. Saved values are stored (`SettingStore`) and take effect at once: a
 * worker count goes to the runner, everything else is read from here by the HTTP layer.
 *
 * Worker counts have one truth, the runner's limits: a snapshot reads them live, so the settings
 * pages and `GET /api/admin/task/workers` always agree. `POST /api/admin/task/workers` stays what
 * it was, this node's limit until it restarts (a way to drain one node of several); a saved
 * worker setting is stored and applies to every node, now and after restarts.
 *
 * With several nodes on one database (`refreshMs` > 0) each node reloads the stored values that
 * often, so a change made through one node reaches the others.
 */
export class SiteSettings {
  private readonly byKey: Map<string, SettingDefinition>;
  private readonly byKind = new Map<TaskKind, SettingDefinition>();
  private stored = new Map<string, string>();
  private current: SettingsSnapshot = { revision: 0, get: () => '' };
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly store: SettingStore,
    readonly definitions: readonly SettingDefinition[],
    private readonly runner: Runner,
    private readonly log: Logger,
  ) {
    this.byKey = new Map(definitions.map((d) => [d.key, d]));
    for (const d of definitions) if (d.workers) this.byKind.set(d.workers, d);
  }

  /** Load the stored values and apply them (worker counts to the runner). */
  static async open(
    store: SettingStore,
    definitions: readonly SettingDefinition[],
    runner: Runner,
    log: Logger,
    options: { refreshMs?: number } = {},
  ): Promise<SiteSettings> {
    const settings = new SiteSettings(store, definitions, runner, log);
    await settings.reload();
    if (options.refreshMs && options.refreshMs > 0) {
      settings.timer = setInterval(() => {
        settings.reload().catch((err) => log.warn({ err }, 'could not reload settings'));
      }, options.refreshMs);
      settings.timer.unref();
    }
    return settings;
  }

  /** The current values. */
  snapshot(): SettingsSnapshot {
    return this.current;
  }

  /** The definition of `key`, or undefined when ferry has no such setting. */
  definition(key: string): SettingDefinition | undefined {
    return this.byKey.get(key);
  }

  /**
   * Validate every change, then store and apply them all; nothing changes when one is invalid
   * (`E_BAD_REQUEST` naming it). A read-only setting may be sent back unchanged (the settings
   * pages send their whole page), not changed.
   */
  async save(changes: readonly SettingChange[]): Promise<void> {
    const values = new Map<string, string>();
    for (const change of changes) {
      const d = this.byKey.get(change.key);
      if (!d) throw new FerryError('E_BAD_REQUEST', `unknown setting "${change.key}"`);
      const value = checkValue(d, change.value);
      if (d.readOnly) {
        if (value !== this.current.get(d.key))
          throw new FerryError('E_BAD_REQUEST', `setting "${d.key}" cannot be changed here`);
        continue;
      }
      values.set(d.key, value);
    }
    await this.write(values);
  }

  /** Put `key` back to its default. */
  async reset(key: string): Promise<void> {
    const d = this.byKey.get(key);
    if (!d) throw new FerryError('E_BAD_REQUEST', `unknown setting "${key}"`);
    if (!d.readOnly) await this.write(new Map([[key, d.default]]));
  }

  /** Stop reloading (multi-node). */
  close(): void {
    clearInterval(this.timer);
  }

  private async write(values: ReadonlyMap<string, string>): Promise<void> {
    if (values.size === 0) return;
    const set = new Map<string, string>();
    const unset: string[] = [];
    for (const [key, value] of values) {
      // A value equal to its default is forgotten, so a changed default in the config applies.
      if (value === this.byKey.get(key)?.default) unset.push(key);
      else set.set(key, value);
    }
    await this.store.write(set, unset);
    const stored = new Map(this.stored);
    for (const [key, value] of set) stored.set(key, value);
    for (const key of unset) stored.delete(key);
    // A worker count saved through this node applies here even when the stored value did not
    // change (this node's limit may have been set apart by POST /api/admin/task/workers).
    this.apply(stored, new Set(values.keys()));
  }

  private async reload(): Promise<void> {
    const stored = await this.store.all();
    for (const [key, value] of stored) {
      const d = this.byKey.get(key);
      // A value stored by another version of ferry, or by hand, that this one cannot use.
      if (!d || d.readOnly || !isValid(d, value)) {
        this.log.warn({ key }, 'ignoring a stored setting ferry cannot use');
        stored.delete(key);
      }
    }
    if (this.current.revision === 0 || !sameMap(stored, this.stored)) this.apply(stored);
  }

  /**
   * Make `stored` current. A worker count goes to the runner only when its stored value changed,
   * at start, or when it is in `saved`, so saving other settings leaves a node's own
   * `POST /api/admin/task/workers` alone.
   */
  private apply(stored: Map<string, string>, saved: ReadonlySet<string> = new Set()): void {
    const first = this.current.revision === 0;
    for (const [kind, d] of this.byKind) {
      const value = stored.get(d.key) ?? d.default;
      if (first || saved.has(d.key) || value !== (this.stored.get(d.key) ?? d.default))
        this.runner.setLimit(kind, Number(value));
    }
    this.stored = stored;
    const values = new Map(this.definitions.map((d) => [d.key, stored.get(d.key) ?? d.default]));
    const kinds = new Map([...this.byKind].map(([kind, d]) => [d.key, kind]));
    const runner = this.runner;
    this.current = {
      revision: this.current.revision + 1,
      get(key) {
        const kind = kinds.get(key);
        return kind ? String(runner.getLimits()[kind]) : (values.get(key) ?? '');
      },
    };
  }
}

/** The value as stored (a string), or `E_BAD_REQUEST` saying what `d` takes. */
function checkValue(d: SettingDefinition, value: unknown): string {
  if (typeof value !== 'string')
    throw new FerryError('E_BAD_REQUEST', `setting "${d.key}": value must be a string`);
  if (!isValid(d, value)) throw new FerryError('E_BAD_REQUEST', `setting "${d.key}": ${expected(d)}`);
  return value;
}

function isValid(d: SettingDefinition, value: string): boolean {
  switch (d.type) {
    case 'bool':
      return value === 'true' || value === 'false';
    case 'number': {
      if (!/^-?\d{1,15}$/.test(value)) return false;
      const n = Number(value);
      return n >= (d.min ?? Number.MIN_SAFE_INTEGER) && n <= (d.max ?? Number.MAX_SAFE_INTEGER);
    }
    case 'select':
      return (d.options ?? '').split(',').includes(value);
    default:
      return value.length <= MAX_SETTING_LENGTH;
  }
}

function expected(d: SettingDefinition): string {
  switch (d.type) {
    case 'bool':
      return 'value must be "true" or "false"';
    case 'number':
      return `value must be a whole number from ${d.min ?? '-∞'} to ${d.max ?? '∞'}`;
    case 'select':
      return `value must be one of ${d.options}`;
    default:
      return `value must be at most ${MAX_SETTING_LENGTH} characters`;
  }
}

function sameMap(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
