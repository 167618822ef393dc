import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { type CompiledQuery, Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { FerryError } from '../errors.ts';
import { type Dialect, migrate } from './migrations.ts';
import type { Database } from './schema.ts';

export interface OpenedDatabase {
  db: Kysely<Database>;
  dialect: Dialect;
  /**
   * The rows of a compiled SELECT as arrays of values, in its select list's order: the read
   * behind every task list page, on both databases. Building an object per row is the costliest
   * part of reading a page of thirty columns; better-sqlite3's `raw` and pg's `rowMode: 'array'`
   * skip it (see bench/RESULTS.md).
   * On SQLite it waits for the connection as every Kysely query does, so it never reads in the
   * middle of a write's transaction.
   */
  selectArrays(query: CompiledQuery): Promise<unknown[][]>;
  close(): Promise<void>;
}

/**
 * Open the database named by `url` and run pending migrations.
 * `sqlite:<file>` is the embedded default (WAL journal; one ferry process per file).
 * PostgreSQL (`postgres://…`) is the multi-node store: every node points at it, claims use
 * `FOR UPDATE SKIP LOCKED`, and migrations run under an advisory lock.
 */
export async function openDatabase(
  url: string,
  options: { synchronous: 'FULL' | 'NORMAL' },
): Promise<OpenedDatabase> {
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    if (file !== ':memory:') await mkdir(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    sqlite.pragma('journal_mode = WAL');
    // FULL: a committed task survives power loss; NORMAL: it survives a process crash only.
    sqlite.pragma(`synchronous = ${options.synchronous}`);
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('cache_size = -32000');
    const cached = withStatementCache(sqlite);
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cached }) });
    await migrate(db, 'sqlite');
    const selectArrays = (query: CompiledQuery) =>
      db.connection().execute(async () => {
        const statement = cached.prepare(query.sql);
        // The statement is shared with Kysely's queries of the same text: raw only for this call.
        statement.raw(true);
        try {
          return statement.all(...query.parameters) as unknown[][];
        } finally {
          statement.raw(false);
        }
      });
    return { db, dialect: 'sqlite', selectArrays, close: () => db.destroy() };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    // Imported only for PostgreSQL: the embedded default should not hold the driver in memory.
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    try {
      await migrate(db, 'postgres');
    } catch (err) {
      await db.destroy();
      throw new FerryError(
        'E_STORAGE_CONFIG',
        `cannot use the database ${redact(url)}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const selectArrays = async (query: CompiledQuery) =>
      (await pool.query<unknown[]>({ text: query.sql, values: [...query.parameters], rowMode: 'array' }))
        .rows;
    return { db, dialect: 'postgres', selectArrays, close: () => db.destroy() };
  }
  throw new FerryError(
    'E_BAD_REQUEST',
    `unsupported database URL (sqlite:<file> or postgres://…): ${redact(url)}`,
  );
}

/**
 * Kysely prepares every query anew; with better-sqlite3 a prepared statement can be reused, and
 * preparing was a fifth of the engine's CPU time on small tasks. Cache the most recent
 * statements by SQL text (queries are built from the same shapes over and over).
 */
function withStatementCache(sqlite: SQLite.Database, size = 256): SQLite.Database {
  const cache = new Map<string, SQLite.Statement>();
  const prepare = sqlite.prepare.bind(sqlite);
  return new Proxy(sqlite, {
    get(target, key, receiver) {
      if (key !== 'prepare') return Reflect.get(target, key, receiver);
      return (source: string) => {
        let statement = cache.get(source);
        if (statement) {
          cache.delete(source); // re-insert: the Map's order is the recency order
        } else {
          statement = prepare(source);
          if (cache.size >= size) cache.delete(cache.keys().next().value as string);
        }
        cache.set(source, statement);
        return statement;
      };
    },
  });
}

/** A database URL fit for logs and errors: no password. */
export function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
