import type { Kysely, Selectable } from 'kysely';
import type { Database, StoragesTable } from './schema.ts';

/** A storage mount as stored, with AList's field names in mind (`addition` is a JSON string). */
export interface StorageRecord {
  id: number;
  mountPath: string;
  driver: string;
  addition: string;
  order: number;
  remark: string;
  disabled: boolean;
  modified: number;
}

export type NewStorage = Omit<StorageRecord, 'id' | 'modified'>;

export class MountStore {
  constructor(private readonly db: Kysely<Database>) {}

  async list(): Promise<StorageRecord[]> {
    return (await this.db.selectFrom('storages').selectAll().orderBy('order').orderBy('id').execute()).map(
      toRecord,
    );
  }

  async byId(id: number): Promise<StorageRecord | null> {
    const row = await this.db.selectFrom('storages').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  /** Insert a storage; null when its mount path is taken (also by an insert racing this one). */
  async insert(s: NewStorage): Promise<StorageRecord | null> {
    const row = await this.db
      .insertInto('storages')
      .values({
        mount_path: s.mountPath,
        driver: s.driver,
        addition: s.addition,
        order: s.order,
        remark: s.remark,
        disabled: s.disabled ? 1 : 0,
        modified: Date.now(),
      })
      .onConflict((oc) => oc.column('mount_path').doNothing())
      .returningAll()
      .executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  async update(id: number, s: NewStorage): Promise<StorageRecord | null> {
    const row = await this.db
      .updateTable('storages')
      .set({
        mount_path: s.mountPath,
        driver: s.driver,
        addition: s.addition,
        order: s.order,
        remark: s.remark,
        disabled: s.disabled ? 1 : 0,
        modified: Date.now(),
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  async delete(id: number): Promise<boolean> {
    const r = await this.db.deleteFrom('storages').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }
}

function toRecord(row: Selectable<StoragesTable>): StorageRecord {
  return {
    id: Number(row.id),
    mountPath: row.mount_path,
    driver: row.driver,
    addition: row.addition,
    order: Number(row.order),
    remark: row.remark,
    disabled: row.disabled === 1,
    modified: Number(row.modified),
  };
}
