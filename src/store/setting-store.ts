import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';

/** Rows of `meta` that hold settings are named `setting:<key>`; other rows are not settings. */
const PREFIX = 'setting:';

/**
 * Settings an admin changed, as key → value strings in the `meta` table. Only values that differ
 * from their defaults are stored (the caller deletes the others), so a default changed in the
 * config file still takes effect for every setting nobody set by hand.
 */
export class SettingStore {
  constructor(private readonly db: Kysely<Database>) {}

  /** Every stored setting. */
  async all(): Promise<Map<string, string>> {
    const rows = await this.db
      .selectFrom('meta')
      .select(['key', 'value'])
      .where('key', 'like', `${PREFIX}%`)
      .execute();
    return new Map(rows.map((r) => [r.key.slice(PREFIX.length), r.value]));
  }

  /**
   * Store `set` (insert or replace) and forget `unset`. Each is one statement, so neither is seen
   * half-done; no transaction, since on SQLite the task store's own writes share the connection.
   */
  async write(set: ReadonlyMap<string, string>, unset: readonly string[]): Promise<void> {
    if (set.size > 0) {
      await this.db
        .insertInto('meta')
        .values([...set].map(([key, value]) => ({ key: PREFIX + key, value })))
        .onConflict((oc) => oc.column('key').doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })))
        .execute();
    }
    if (unset.length > 0) {
      await this.db
        .deleteFrom('meta')
        .where(
          'key',
          'in',
          unset.map((k) => PREFIX + k),
        )
        .execute();
    }
  }
}
