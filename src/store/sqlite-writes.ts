import type SQLite from 'better-sqlite3';
import type { TasksTable } from './schema.ts';
import { type Outcome, settleEach } from './write-batcher.ts';

/** A `tasks` row as SQLite returns it. */
export type TaskRow = TasksTable & { seq: number };

/** Which row an update may touch: this id, in one of these states, held by this owner. */
export interface RowGuard {
  id: string;
  states?: readonly string[];
  owner?: string;
}

/**
 * The engine's hottest writes (claim, state changes, progress) on SQLite, as prepared
 * better-sqlite3 statements run inside one synchronous group commit, and the read behind every
 * list page (`selectValues`).
 *
 * Why not Kysely here: each of these runs once or twice per task, and building, compiling and
 * awaiting a Kysely query cost about as much as SQLite's own work; a commit made of awaited
 * statements also lets other code run between them. Here a batch is one synchronous
 * BEGIN … COMMIT: nothing interleaves, and each caller's promise settles after the commit.
 * Everything else (inserts, bulk actions, single reads) stays on Kysely: the two share one
 * connection, and Kysely never holds a transaction open after the start-up migrations.
 */
export class SqliteWrites {
  private queue: { run: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;
  private readonly statements = new Map<string, SQLite.Statement>();
  private readonly selectRunnable: SQLite.Statement;
  private readonly claimOne: SQLite.Statement;
  private readonly commitBatch: (batch: readonly { run: () => unknown }[]) => Outcome[];
  private readonly claimTx: (
    kind: string,
    owner: string,
    limit: number,
    until: number,
    now: number,
  ) => TaskRow[];

  /** `runnable`: the SQL condition of a runnable task, spelled as the partial index is. */
  constructor(
    private readonly sqlite: SQLite.Database,
    runnable: string,
  ) {
    // A SELECT then an UPDATE per row: as one `UPDATE … WHERE seq IN (SELECT …)` SQLite first
    // materialises the subquery, which made a claim three times as slow.
    this.selectRunnable = sqlite
      .prepare(
        `SELECT seq FROM tasks WHERE kind = ? AND ${runnable} AND run_at <= ? ORDER BY run_at, seq LIMIT ?`,
      )
      .pluck();
    this.claimOne = sqlite.prepare(
      `UPDATE tasks SET state = 'running', done = 0, lease_owner = ?, lease_until = ?,
        start_time = COALESCE(start_time, ?), end_time = NULL, updated_at = ?
      WHERE seq = ? AND ${runnable} RETURNING *`,
    );
    // Nested in a batch's transaction this becomes a savepoint; alone, its own transaction.
    this.claimTx = sqlite.transaction(
      (kind: string, owner: string, limit: number, until: number, now: number) => {
        const rows: TaskRow[] = [];
        for (const seq of this.selectRunnable.all(kind, now, limit) as number[]) {
          const row = this.claimOne.get(owner, until, now, now, seq) as TaskRow | undefined;
          if (row) rows.push(row);
        }
        return rows;
      },
    );
    this.commitBatch = sqlite.transaction((batch: readonly { run: () => unknown }[]) =>
      batch.map((item): Outcome => {
        try {
          return { ok: true, value: item.run() };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    );
  }

  /**
   * Run `write` in the next group commit: writes asked for in the same turn of the event loop
   * share one transaction (one fsync with `synchronous=FULL`). The promise settles after the
   * commit, with `write`'s own result or error.
   */
  batch<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run: write, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    let outcomes: Outcome[];
    try {
      outcomes = this.commitBatch(batch);
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    settleEach(batch, outcomes);
  }

  /** Up to `limit` runnable tasks of `kind`, oldest `run_at` first, now `running` under `owner`'s lease. */
  claim(kind: string, owner: string, limit: number, until: number, now: number): TaskRow[] {
    return this.claimTx(kind, owner, limit, until, now);
  }

  /**
   * `UPDATE tasks SET <set> WHERE <guard>`; with `returning`, the updated row (undefined when the
   * guard matched nothing). Statements are prepared once per shape (columns set, guard form).
   */
  update(set: Record<string, unknown>, guard: RowGuard, returning: true): TaskRow | undefined;
  update(set: Record<string, unknown>, guard: RowGuard, returning: false): void;
  update(set: Record<string, unknown>, guard: RowGuard, returning: boolean): TaskRow | undefined {
    const columns: string[] = [];
    const values: unknown[] = [];
    for (const [column, value] of Object.entries(set)) {
      if (value === undefined) continue;
      columns.push(`"${column}" = ?`);
      values.push(value);
    }
    let sql = `UPDATE tasks SET ${columns.join(', ')} WHERE id = ?`;
    values.push(guard.id);
    if (guard.states) {
      sql += ` AND state IN (${guard.states.map(() => '?').join(', ')})`;
      values.push(...guard.states);
    }
    if (guard.owner !== undefined) {
      sql += ' AND lease_owner = ?';
      values.push(guard.owner);
    }
    if (returning) sql += ' RETURNING *';
    const statement = this.prepared(sql);
    if (returning) return statement.get(...values) as TaskRow | undefined;
    statement.run(...values);
    return undefined;
  }

  /**
   * The rows of a SELECT (compiled by Kysely) as arrays, in the query's column order. A list page
   * reads a hundred rows of thirty columns; better-sqlite3 builds arrays in half the time it
   * takes to build objects, and this skips Kysely's promise round trip as well.
   */
  selectValues(sql: string, parameters: readonly unknown[]): unknown[][] {
    return this.prepared(sql)
      .raw(true)
      .all(...parameters) as unknown[][];
  }

  private prepared(sql: string): SQLite.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      // The shapes are few (a handful of transitions, the progress write, one list read per filter
      // combination the task APIs use); bound the map anyway.
      if (this.statements.size >= 64) this.statements.clear();
      statement = this.sqlite.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }
}
