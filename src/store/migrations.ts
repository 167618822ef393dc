import { type ColumnDefinitionBuilder, type Kysely, sql } from 'kysely';
import type { Database } from './schema.ts';

/**
 * Numbered, forward-only migrations. Each runs once, in order, inside the start-up transaction
 * (see `migrate`). Never edit a published migration: add the next number.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists
type Migration = (db: Kysely<any>, dialect: Dialect) => Promise<void>;

export type Dialect = 'sqlite' | 'postgres';

/**
 * Indexed by number - 1. A `null` is a number given to work landing on another branch: every
 * migration runs once whatever order the numbers arrive in (see `migrate`).
 */
const MIGRATIONS: (Migration | null)[] = [
  // 1: tasks, users, storages, meta
  async (db, dialect) => {
    // SQLite's rowid alias must be spelled `integer primary key autoincrement`; PostgreSQL wants
    // a 64-bit identity.
    const serial = dialect === 'sqlite' ? 'integer' : 'bigserial';
    const idColumn = (c: ColumnDefinitionBuilder) =>
      dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey();
    await db.schema
      .createTable('tasks')
      .addColumn('seq', serial, (c) => idColumn(c))
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('creator_id', 'integer', (c) => c.notNull())
      .addColumn('creator', 'text', (c) => c.notNull())
      .addColumn('creator_role', 'integer', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('done', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('status', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('error', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('error_code', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('total_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('done_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('total_files', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('done_files', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('failed_files', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('speed', 'real', (c) => c.notNull().defaultTo(0))
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('failures', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('max_retry', 'integer', (c) => c.notNull())
      .addColumn('run_at', 'bigint', (c) => c.notNull())
      .addColumn('lease_owner', 'text')
      .addColumn('lease_until', 'bigint')
      .addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('delete_requested', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('start_time', 'bigint')
      .addColumn('end_time', 'bigint')
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    // claim: runnable tasks of a kind, already in claim order (no sort, however long the queue)
    await db.schema
      .createIndex('tasks_runnable')
      .on('tasks')
      .columns(['kind', 'run_at', 'seq'])
      .where(sql<boolean>`state IN ('pending', 'waiting_retry', 'before_retry') AND cancel_requested = 0`)
      .execute();
    // AList done/undone lists, all users and one user's
    await db.schema.createIndex('tasks_kind_done').on('tasks').columns(['kind', 'done', 'seq']).execute();
    await db.schema
      .createIndex('tasks_creator_kind_done')
      .on('tasks')
      .columns(['creator_id', 'kind', 'done', 'seq'])
      .execute();
    // cross-kind lists (KooDrive) and retention sweep
    await db.schema.createIndex('tasks_creator_seq').on('tasks').columns(['creator_id', 'seq']).execute();
    await db.schema.createIndex('tasks_done_end').on('tasks').columns(['done', 'end_time']).execute();
    // lease reclaim and cancel polling by the holding worker; partial, so that a million
    // finished tasks (their lease released) cost these queries nothing
    await db.schema
      .createIndex('tasks_lease')
      .on('tasks')
      .columns(['lease_owner', 'lease_until'])
      .where(sql<boolean>`lease_owner IS NOT NULL`)
      .execute();
    // deleted while running: removed by upkeep once finished (a handful of rows at most)
    await db.schema
      .createIndex('tasks_delete_requested')
      .on('tasks')
      .column('done')
      .where(sql.ref('delete_requested'), '=', 1)
      .execute();

    await db.schema
      .createTable('users')
      .addColumn('id', serial, (c) => idColumn(c))
      .addColumn('username', 'text', (c) => c.notNull().unique())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('password_ts', 'bigint', (c) => c.notNull())
      .addColumn('base_path', 'text', (c) => c.notNull().defaultTo('/'))
      .addColumn('role', 'integer', (c) => c.notNull())
      .addColumn('permission', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('storages')
      .addColumn('id', serial, (c) => idColumn(c))
      .addColumn('mount_path', 'text', (c) => c.notNull().unique())
      .addColumn('driver', 'text', (c) => c.notNull())
      .addColumn('addition', 'text', (c) => c.notNull())
      .addColumn('order', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('remark', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('modified', 'bigint', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('meta')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
  },
  // 2: how often a task's server stopped under it (a task that crashes the server is not resumed forever)
  async (db) => {
    await db.schema
      .alterTable('tasks')
      .addColumn('interruptions', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
  // 3: AList's hashed login (`/api/auth/login/hash`) and logout.
  // `users.static_hash`: a slow hash of AList's static hash of the password, which is what that
  // login sends; '' until the password is next set or used in a plain login (see AuthService).
  // `revoked_tokens`: tokens ended by a logout, by id, until they would have expired anyway.
  async (db) => {
    await db.schema
      .alterTable('users')
      .addColumn('static_hash', 'text', (c) => c.notNull().defaultTo(''))
      .execute();
    await db.schema
      .createTable('revoked_tokens')
      .addColumn('token_id', 'text', (c) => c.primaryKey())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('revoked_tokens_expires').on('revoked_tokens').column('expires_at').execute();
  },
  // 4: AList's storage settings beyond the driver's own (cache, proxy, sort, sign), kept as JSON
  async (db) => {
    await db.schema
      .alterTable('storages')
      .addColumn('options', 'text', (c) => c.notNull().defaultTo('{}'))
      .execute();
  },
  // 5: scale-out. `tasks.lease_token`: bumped by every claim, so a write names the attempt it
  // belongs to (owner + token) and a node that stalled past its lease changes nothing.
  // `tasks.insert_xid` (PostgreSQL): the inserting transaction's id, the key of KooDrive's stable
  // pages (see `task-sql.ts`, `stablePage`); 0 on SQLite, whose one writer commits in `seq` order.
  // `nodes`: one row per running process, renewed with its leases (`GET /api/admin/nodes`).
  async (db, dialect) => {
    await db.schema
      .alterTable('tasks')
      .addColumn('lease_token', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .alterTable('tasks')
      .addColumn('insert_xid', 'bigint', (c) =>
        c.notNull().defaultTo(dialect === 'postgres' ? sql`(pg_current_xact_id()::text)::bigint` : 0),
      )
      .execute();
    await db.schema.createIndex('tasks_xid_seq').on('tasks').columns(['insert_xid', 'seq']).execute();
    await db.schema
      .createIndex('tasks_creator_xid_seq')
      .on('tasks')
      .columns(['creator_id', 'insert_xid', 'seq'])
      .execute();
    await db.schema
      .createTable('nodes')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('host', 'text', (c) => c.notNull())
      .addColumn('pid', 'integer', (c) => c.notNull())
      .addColumn('started_at', 'bigint', (c) => c.notNull())
      .addColumn('heartbeat_at', 'bigint', (c) => c.notNull())
      .addColumn('workers', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('running', 'text', (c) => c.notNull().defaultTo('{}'))
      .execute();
  },
  // 6: webhooks (issue 23): subscriptions, the outbox of deliveries, and each attempt's outcome
  async (db, dialect) => {
    const serial = dialect === 'sqlite' ? 'integer' : 'bigserial';
    const idColumn = (c: ColumnDefinitionBuilder) =>
      dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey();
    await db.schema
      .createTable('webhooks')
      .addColumn('id', serial, (c) => idColumn(c))
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('events', 'text', (c) => c.notNull())
      .addColumn('kinds', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('webhook_deliveries')
      .addColumn('seq', serial, (c) => idColumn(c))
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('webhook_id', 'bigint', (c) => c.notNull())
      .addColumn('event', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', 'bigint')
      .addColumn('give_up_at', 'bigint', (c) => c.notNull())
      .addColumn('lease_until', 'bigint')
      .addColumn('delivered_at', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    // the dispatcher's claim: due deliveries only, however many delivered ones are kept
    await db.schema
      .createIndex('webhook_deliveries_due')
      .on('webhook_deliveries')
      .columns(['next_attempt_at', 'seq'])
      .where(sql<boolean>`state = 'pending'`)
      .execute();
    // the retention sweep: finished deliveries, oldest first
    await db.schema
      .createIndex('webhook_deliveries_finished')
      .on('webhook_deliveries')
      .column('created_at')
      .where(sql<boolean>`state <> 'pending'`)
      .execute();
    await db.schema
      .createIndex('webhook_deliveries_hook')
      .on('webhook_deliveries')
      .columns(['webhook_id', 'seq'])
      .execute();
    await db.schema
      .createTable('webhook_attempts')
      .addColumn('seq', serial, (c) => idColumn(c))
      .addColumn('delivery_id', 'text', (c) => c.notNull())
      .addColumn('attempt', 'integer', (c) => c.notNull())
      .addColumn('status_code', 'integer')
      .addColumn('error', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('duration_ms', 'integer', (c) => c.notNull())
      .addColumn('next_attempt_at', 'bigint')
      .addColumn('delivered_at', 'bigint')
      .addColumn('at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('webhook_attempts_delivery')
      .on('webhook_attempts')
      .columns(['delivery_id', 'attempt'])
      .execute();
  },
  // 7: jobs (saved, scheduled transfers) and their runs. `jobs.next_run_at` is the due slot a node
  // claims by compare-and-set; `job_runs (job_id, slot)` is unique, so a slot can start one run.
  async (db, dialect) => {
    const serial = dialect === 'sqlite' ? 'integer' : 'bigserial';
    await db.schema
      .createTable('jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('owner_id', 'integer', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('mode', 'text', (c) => c.notNull())
      .addColumn('src_dir', 'text', (c) => c.notNull())
      .addColumn('dst_dir', 'text', (c) => c.notNull())
      .addColumn('options', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('schedule', 'text')
      .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('next_run_at', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('jobs_owner').on('jobs').columns(['owner_id', 'created_at']).execute();
    await db.schema
      .createIndex('jobs_due')
      .on('jobs')
      .column('next_run_at')
      .where(sql.ref('enabled'), '=', 1)
      .execute();
    await db.schema
      .createTable('job_runs')
      .addColumn('id', serial, (c) =>
        dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey(),
      )
      .addColumn('job_id', 'text', (c) => c.notNull())
      .addColumn('slot', 'bigint')
      .addColumn('task_id', 'text')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('error', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('job_runs_slot')
      .on('job_runs')
      .columns(['job_id', 'slot'])
      .unique()
      .execute();
    await db.schema.createIndex('job_runs_job').on('job_runs').columns(['job_id', 'id']).execute();
  },
];

/**
 * Bring the schema up to date. Runs in one transaction (under an advisory lock on PostgreSQL) so
 * two starting processes cannot interleave.
 */
export async function migrate(db: Kysely<Database>, dialect: Dialect): Promise<void> {
  await db.transaction().execute(async (trx) => {
    if (dialect === 'postgres') await sql`SELECT pg_advisory_xact_lock(7316001)`.execute(trx);
    await sql`CREATE TABLE IF NOT EXISTS ferry_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`.execute(
      trx,
    );
    // Each number not applied yet, not just those above the highest: numbers are handed to
    // branches developed side by side, so 6 may reach a database before 5 does.
    const rows = await sql<{ version: number }>`SELECT version FROM ferry_migrations`.execute(trx);
    const applied = new Set(rows.rows.map((r) => Number(r.version)));
    for (let version = 1; version <= MIGRATIONS.length; version++) {
      const migration = MIGRATIONS[version - 1];
      if (!migration || applied.has(version)) continue;
      await migration(trx, dialect);
      await sql`INSERT INTO ferry_migrations (version, applied_at) VALUES (${version}, ${Date.now()})`.execute(
        trx,
      );
    }
  });
}
