import type { Kysely, Selectable } from 'kysely';
import type { Database, StoragesTable } from './schema.ts';

/**
 * AList's common storage fields that are not the driver's settings: listing cache, download
 * proxy, sorting, link signing, search index. ferry keeps and returns them so that AList clients
 * (the OpenList UI's Edit form, its backups, the SDKs) read back what they saved; which of them
 * ferry acts on is written where the form is described (`src/api/alist/driver-info.ts`).
 */
export interface StorageOptions {
  cacheExpiration: number;
  customCachePolicies: string;
  webProxy: boolean;
  webdavPolicy: string;
  proxyRange: boolean;
  downProxyUrl: string;
  disableProxySign: boolean;
  orderBy: string;
  orderDirection: string;
  extractFolder: string;
  disableIndex: boolean;
  enableSign: boolean;
}

/** What a storage saved without these fields holds: Go's zero values, as AList's database does. */
export const DEFAULT_STORAGE_OPTIONS: Readonly<StorageOptions> = {
  cacheExpiration: 0,
  customCachePolicies: '',
  webProxy: false,
  webdavPolicy: '',
  proxyRange: false,
  downProxyUrl: '',
  disableProxySign: false,
  orderBy: '',
  orderDirection: '',
  extractFolder: '',
  disableIndex: false,
  enableSign: false,
};

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
  options: StorageOptions;
}

/** A storage to store; `options` left out means the defaults. */
export type NewStorage = Omit<StorageRecord, 'id' | 'modified' | 'options'> & { options?: StorageOptions };

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
      .values({ ...toRow(s), modified: Date.now() })
      .onConflict((oc) => oc.column('mount_path').doNothing())
      .returningAll()
      .executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  async update(id: number, s: NewStorage): Promise<StorageRecord | null> {
    const row = await this.db
      .updateTable('storages')
      .set({ ...toRow(s), modified: Date.now() })
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

function toRow(s: NewStorage) {
  return {
    mount_path: s.mountPath,
    driver: s.driver,
    addition: s.addition,
    order: s.order,
    remark: s.remark,
    disabled: s.disabled ? 1 : 0,
    options: JSON.stringify(s.options ?? DEFAULT_STORAGE_OPTIONS),
  };
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
    options: parseOptions(row.options),
  };
}

/** Stored options over the defaults: a key of the wrong type (or bad JSON) reads as its default. */
function parseOptions(json: string): StorageOptions {
  let stored: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
      stored = parsed as Record<string, unknown>;
  } catch {
    // written by toRow, so only a hand-edited row lands here: it reads as the defaults
  }
  const options = { ...DEFAULT_STORAGE_OPTIONS };
  const target = options as Record<string, unknown>;
  for (const [key, fallback] of Object.entries(DEFAULT_STORAGE_OPTIONS)) {
    if (typeof stored[key] === typeof fallback) target[key] = stored[key];
  }
  return options;
}
