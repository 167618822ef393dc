/*
 * Every SQL statement of the task store, built with Kysely for both databases, and what differs
 * between them named once (`DialectTraits`; how a connection reads rows as arrays is
 * `OpenedDatabase.selectArrays`). The store (`sql-task-store.ts`) decides when to run them, every
 * write through its one write path; nothing else in ferry writes SQL for `tasks`.
 *
 * Every UPDATE of `tasks` is built by `updateTasks` from a `RowGuard`: the one place that says
 * which rows a write may touch (this task, in a state the state table lets move to the target,
 * held by this lease: owner and attempt token, checked in the same statement as the write).
 */

import { type Kysely, type SqlBool, sql, type UpdateObject } from 'kysely';
import type { TaskKind } from '../config.ts';
import { isDone, RUNNABLE_STATES, sourcesOf, type TaskState } from '../tasks/model.ts';
import type { Dialect } from './migrations.ts';
import type { Database } from './schema.ts';
import { LIST_COLUMNS } from './task-rows.ts';

type Db = Kysely<Database>;

/** What the store does differently on each database. */
export interface DialectTraits {
  /**
   * Several nodes claim and renew at once (PostgreSQL): candidate rows are read `FOR UPDATE SKIP
   * LOCKED`, so two nodes never claim one task and nobody waits on a row another holds. SQLite has
   * one writer, and no such clause.
   */
  readonly skipLocked: boolean;
  /**
   * A failed statement aborts its whole transaction (PostgreSQL): each write of a group commit
   * runs under a savepoint so it fails alone. On SQLite only writes of several statements need one.
   */
  readonly savepointPerWrite: boolean;
  /**
   * Several processes share the store (PostgreSQL): a claim also takes over running tasks whose
   * holder's lease expired. SQLite has one process, which settles every held task at start.
   */
  readonly takeOverInClaim: boolean;
  /**
   * Transactions may commit in another order than they drew `seq` (PostgreSQL): KooDrive's pages
   * key on `insert_xid` below the oldest transaction still running (`stablePage`). SQLite's one
   * writer commits in `seq` order.
   */
  readonly commitOrderedSeq: boolean;
}

export const DIALECT_TRAITS: Readonly<Record<Dialect, DialectTraits>> = {
  sqlite: { skipLocked: false, savepointPerWrite: false, takeOverInClaim: false, commitOrderedSeq: true },
  postgres: { skipLocked: true, savepointPerWrite: true, takeOverInClaim: true, commitOrderedSeq: false },
};

/** Rows per INSERT: SQLite caps the bound parameters of one statement (32,766), 32 columns a row. */
export const INSERT_SLICE = 200;
/** Ids per `IN (…)` list of a bulk read or delete. */
export const ID_SLICE = 500;

/**
 * Runnable tasks, spelled exactly as the partial index `tasks_runnable` (migration 1) is, with
 * literals rather than parameters: only then can SQLite prove the index applies. The states are
 * the table's (`RUNNABLE_STATES`: those that may move to running), in the index's order.
 */
const RUNNABLE = sql.raw<SqlBool>(
  `state IN (${RUNNABLE_STATES.map((s) => `'${s}'`).join(', ')}) AND cancel_requested = 0`,
);

/** Columns a write may set. `state` and `done` are not among them: only a guarded move sets those. */
export type TaskColumns = Omit<UpdateObject<Database, 'tasks'>, 'state' | 'done' | 'seq' | 'id'>;

/**
 * Which rows a write may touch. Every field narrows; without `id` or `ids` the write is a sweep
 * over many tasks (a claim, a reclaim), which adds its own conditions.
 */
export interface RowGuard {
  id?: string;
  ids?: readonly string[];
  /**
   * A state change: the row moves to `to`, and only from a state the table lets move there
   * (narrowed to `from` when given; `from` naming a forbidden move throws, see `sourcesOf`).
   */
  move?: { to: TaskState; from?: readonly TaskState[] };
  /** The lease holder the row must have (any attempt of it: lease renewal). */
  owner?: string;
  /**
   * The lease and attempt the row must have: a worker that lost its lease, or whose attempt was
   * taken over and claimed again since, writes nothing.
   */
  lease?: Lease;
}

/** A holder's lease on one task: its owner, and the token its claim set (`lease_token`). */
export interface Lease {
  owner: string;
  token: number;
}

/** `UPDATE tasks SET … WHERE <guard>`: the one builder of every update of a task row. */
export function updateTasks(db: Db, guard: RowGuard, set: TaskColumns) {
  const move = guard.move;
  let q = db.updateTable('tasks').set(move ? { ...set, state: move.to, done: isDone(move.to) ? 1 : 0 } : set);
  if (guard.id !== undefined) q = q.where('id', '=', guard.id);
  if (guard.ids) q = q.where('id', 'in', [...guard.ids]);
  if (move) q = q.where('state', 'in', [...sourcesOf(move.to, move.from)]);
  if (guard.owner !== undefined) q = q.where('lease_owner', '=', guard.owner);
  if (guard.lease)
    q = q.where('lease_owner', '=', guard.lease.owner).where('lease_token', '=', guard.lease.token);
  return q;
}

/** The columns a claim sets: running under `owner`'s lease until `until`. */
function claimColumns(owner: string, until: number, now: number): TaskColumns {
  return {
    lease_owner: owner,
    lease_until: until,
    lease_token: sql<number>`lease_token + 1`,
    // A takeover: the holder died (or stalled) under the task.
    interruptions: sql<number>`interruptions + CASE WHEN state = 'running' THEN 1 ELSE 0 END`,
    start_time: sql<number>`COALESCE(start_time, ${now})`,
    end_time: null,
    updated_at: now,
  };
}

/**
 * Up to `limit` runnable tasks of `kind` due by `now`, oldest `run_at` first; on PostgreSQL
 * locked until the claim's transaction ends, skipping those another node is claiming.
 *
 * A claim is this SELECT then `claimRows` of what it found, in one transaction. Not one
 * `UPDATE … WHERE seq IN (SELECT … LIMIT n)`: SQLite materialises such a subquery before
 * updating, which made claims much slower; and PostgreSQL may plan it to run again as it updates,
 * each run skipping the rows the last one locked, so that one claim takes more than `limit` (the
 * engine's worker-limit test caught it doing so once the guard's conditions stood beside it).
 */
export function claimCandidates(db: Db, traits: DialectTraits, kind: TaskKind, limit: number, now: number) {
  return db
    .selectFrom('tasks')
    .select('seq')
    .where('kind', '=', kind)
    .where(RUNNABLE)
    .where('run_at', '<=', now)
    .orderBy('run_at')
    .orderBy('seq')
    .limit(limit)
    .$if(traits.skipLocked, (q) => q.forUpdate().skipLocked());
}

/**
 * Running tasks of `kind` whose holder (not `owner`) let its lease expire before `now`: the claim
 * takes them over in the same transaction as the queue's (`claimRows`), locked and skipped as
 * those are, so the first live node to poll continues them. Tasks with a cancel asked, or
 * interrupted `maxInterruptions` times already, are left to the sweep (`reclaimStatements`),
 * which ends them canceled or failed. The partial index `tasks_lease` serves it.
 */
export function takeoverCandidates(
  db: Db,
  kind: TaskKind,
  owner: string,
  limit: number,
  now: number,
  maxInterruptions: number,
) {
  return db
    .selectFrom('tasks')
    .select('seq')
    .where('lease_owner', 'is not', null)
    .where('lease_until', '<', now)
    .where('lease_owner', '<>', owner)
    .where('kind', '=', kind)
    .where('state', '=', 'running')
    .where('cancel_requested', '=', 0)
    .$if(maxInterruptions > 0, (q) => q.where('interruptions', '<', maxInterruptions - 1))
    .orderBy('lease_until')
    .limit(limit)
    .forUpdate()
    .skipLocked();
}

/**
 * Make the tasks among `seqs` running under `owner`'s lease until `until`, with a new attempt
 * token: runnable ones, and running ones whose lease expired before `now` under another holder
 * (a takeover). Returns their rows.
 */
export function claimRows(db: Db, seqs: readonly number[], owner: string, until: number, now: number) {
  return updateTasks(db, { move: { to: 'running' } }, claimColumns(owner, until, now))
    .where('cancel_requested', '=', 0)
    .where('seq', 'in', [...seqs])
    .where((eb) =>
      eb.or([
        eb('state', '<>', 'running'),
        eb.and([eb('lease_until', '<', now), eb('lease_owner', '<>', owner)]),
      ]),
    )
    .returningAll();
}

/** Extend `owner`'s leases on `ids` to `until`; on PostgreSQL rows another transaction holds are skipped, not waited for. */
export function renewLeases(
  db: Db,
  traits: DialectTraits,
  owner: string,
  ids: readonly string[],
  until: number,
) {
  let q = updateTasks(db, { ids, owner }, { lease_until: until });
  if (traits.skipLocked)
    q = q.where('seq', 'in', (eb) =>
      eb
        .selectFrom('tasks')
        .select('seq')
        .where('id', 'in', [...ids])
        .forUpdate()
        .skipLocked(),
    );
  return q.returning(['id', 'lease_token']);
}

/** Ids among `ids` whose lease `owner` holds, with their attempt tokens (a plain read: no lock). */
export function heldBy(db: Db, owner: string, ids: readonly string[]) {
  return db
    .selectFrom('tasks')
    .select(['id', 'lease_token'])
    .where('lease_owner', '=', owner)
    .where('id', 'in', [...ids]);
}

/** The tasks `owner` holds whose cancel (or delete) was requested. */
export function cancelRequestedOf(db: Db, owner: string) {
  return db
    .selectFrom('tasks')
    .select(['id', 'delete_requested'])
    .where('lease_owner', '=', owner)
    .where('cancel_requested', '=', 1);
}

/** Set the cancel (and delete) flag of the unfinished tasks among `ids`. */
export function requestCancel(db: Db, ids: readonly string[], alsoDelete: boolean, now: number) {
  return updateTasks(
    db,
    { ids },
    { cancel_requested: 1, ...(alsoDelete && { delete_requested: 1 }), updated_at: now },
  )
    .where('done', '=', 0)
    .returning('id');
}

/**
 * The settling of tasks whose worker died (lease expired before `now`; every held task with
 * `all`), as statements run in this order. Each moves only what the state table allows:
 * 1. a cancel was asked (or the task was canceling): canceled — the user's cancel stands;
 * 2. failing: failed — its worker was recording that already;
 * 3. errored: waiting_retry at once — its worker died before choosing (the attempt is counted);
 * 4. running and interrupted `maxInterruptions` times now: failed, `E_INTERRUPTED` — it may be
 *    what kills the server, and must not crash it at every start;
 * 5. running: pending, to run again, one interruption more. Its count is what `reclaimExpired` returns.
 *    Left out with `requeue: false` (a shared store's sweep): there the claims take such tasks over
 *    directly (`takeoverCandidates`), and a detour through pending would show a running task
 *    going back to the queue while another node is about to continue it.
 */
export function reclaimStatements(
  db: Db,
  now: number,
  options: { all?: boolean; maxInterruptions?: number; requeue?: boolean },
) {
  const release: TaskColumns = { lease_owner: null, lease_until: null, updated_at: now, speed: 0 };
  const ended: TaskColumns = { ...release, end_time: now };
  const interrupted = sql<number>`interruptions + 1`;
  const held = (to: TaskState, from: readonly TaskState[], set: TaskColumns) => {
    // `lease_owner IS NOT NULL` lets the partial index tasks_lease serve this: only held tasks are
    // read, however many finished ones the table keeps.
    const q = updateTasks(db, { move: { to, from } }, set).where('lease_owner', 'is not', null);
    return options.all ? q : q.where('lease_until', '<', now);
  };
  const limit = options.maxInterruptions ?? 0;
  return [
    held('canceled', ['running', 'canceling', 'errored', 'failing'], ended).where((eb) =>
      eb.or([eb('state', '=', 'canceling'), eb('cancel_requested', '=', 1)]),
    ),
    held('failed', ['failing'], ended),
    held('waiting_retry', ['errored'], { ...release, run_at: now, interruptions: interrupted }),
    ...(limit > 0
      ? [
          held('failed', ['running'], {
            ...ended,
            interruptions: interrupted,
            error: `the server stopped while running this task ${limit} times; it is not started again on its own (retry it to run it once more)`,
            error_code: 'E_INTERRUPTED',
          }).where('interruptions', '>=', limit - 1),
        ]
      : []),
    ...(options.requeue === false
      ? []
      : [held('pending', ['running'], { ...release, run_at: now, interruptions: interrupted })]),
  ];
}

/** Remove the tasks of `ids` (at most `ID_SLICE`). */
export function deleteTasks(db: Db, ids: readonly string[]) {
  return db.deleteFrom('tasks').where('id', 'in', [...ids]);
}

// ---------------------------------------------------------------------------------------------
// Reads

/** Which tasks a list or bulk action covers. Every field narrows; absent means "any". */
export interface TaskFilter {
  kinds?: readonly TaskKind[];
  creatorId?: number;
  /** true: finished (succeeded/canceled/failed); false: unfinished. */
  done?: boolean;
  states?: readonly TaskState[];
  /** Restrict to these ids. */
  ids?: readonly string[];
}

export interface PageRequest {
  /** Keyset: continue after this `seq` (exclusive), in the list's order. */
  afterSeq?: number;
  limit: number;
  /** Offset paging for AList-style `page`/`per_page`; slower than `afterSeq` on deep pages. */
  offset?: number;
  order: 'asc' | 'desc';
}

export function selectOne(db: Db, id: string) {
  return db.selectFrom('tasks').selectAll().where('id', '=', id);
}

/** Tasks by id (at most `ID_SLICE`), with or without their per-item failures. */
export function selectMany(db: Db, ids: readonly string[], failures: boolean) {
  const from = db.selectFrom('tasks').where('id', 'in', [...ids]);
  return failures ? from.selectAll() : from.select(LIST_COLUMNS);
}

/** Tasks matching `filter`; deleted-but-running ones are hidden (their delete is under way). */
function filtered(db: Db, filter: TaskFilter) {
  // An empty list matches nothing: `IN ('')` rather than SQL's invalid `IN ()`.
  const list = <T>(values: readonly T[]) => (values.length ? [...values] : ['']);
  let q = db.selectFrom('tasks').where('delete_requested', '=', 0);
  if (filter.kinds) q = q.where('kind', 'in', list(filter.kinds));
  if (filter.creatorId !== undefined) q = q.where('creator_id', '=', filter.creatorId);
  if (filter.done !== undefined) q = q.where('done', '=', filter.done ? 1 : 0);
  if (filter.states) q = q.where('state', 'in', list(filter.states));
  if (filter.ids) q = q.where('id', 'in', list(filter.ids));
  return q;
}

/** One page of `filter`'s tasks in `seq` order, without their failures. */
export function selectPage(db: Db, filter: TaskFilter, page: PageRequest) {
  let q = filtered(db, filter).select(LIST_COLUMNS);
  if (page.afterSeq !== undefined) q = q.where('seq', page.order === 'asc' ? '>' : '<', page.afterSeq);
  q = q.orderBy('seq', page.order).limit(page.limit);
  return page.offset ? q.offset(page.offset) : q;
}

/** Where a stable page starts: after this key (exclusive), in `(insert_xid, seq)` order. */
export interface StableKey {
  xid: number;
  seq: number;
}

/**
 * One page of `filter`'s tasks that stays stable under concurrent inserts (KooDrive's contract:
 * no task seen twice, none skipped), oldest first, with `settled` on each row.
 *
 * `seq` is drawn when a row is inserted, not when it commits: on PostgreSQL a transaction that
 * drew a smaller `seq` may commit after a reader paged past a larger one, which would skip it.
 * So pages key on `(insert_xid, seq)`: the inserting transaction's id, then `seq`. A row is
 * `settled` when its transaction is older than the oldest one still running
 * (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction that will ever commit a row has
 * an id at or above that horizon, so no row can appear below a settled one later. A page returns
 * settled rows only; the caller reads `limit + 1` rows to learn whether more are coming (an
 * unsettled row, or one past the page). On SQLite, whose one writer commits in `seq` order,
 * `insert_xid` is 0 and every committed row is settled.
 */
export function selectStablePage(
  db: Db,
  traits: DialectTraits,
  filter: TaskFilter,
  after: StableKey | undefined,
  limit: number,
) {
  const settled = traits.commitOrderedSeq
    ? sql<number>`1`
    : sql<number>`CASE WHEN insert_xid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint THEN 1 ELSE 0 END`;
  let q = filtered(db, filter).select([...LIST_COLUMNS, settled.as('settled')]);
  if (after) q = q.where((eb) => eb(eb.refTuple('insert_xid', 'seq'), '>', eb.tuple(after.xid, after.seq)));
  return q.orderBy('insert_xid').orderBy('seq').limit(limit);
}

export function countMatching(db: Db, filter: TaskFilter) {
  return filtered(db, filter).select((eb) => eb.fn.countAll<number | string>().as('n'));
}

/** Finished tasks whose delete was asked for while they ran (their worker died before removing them). */
export function selectDeletedAndFinished(db: Db, limit: number) {
  return db
    .selectFrom('tasks')
    .selectAll()
    .where('delete_requested', '=', 1)
    .where('done', '=', 1)
    .limit(limit);
}

/** Finished tasks that ended before `endedBefore`, oldest first: the retention sweep's input. */
export function selectExpired(db: Db, endedBefore: number, limit: number) {
  return db
    .selectFrom('tasks')
    .selectAll()
    .where('done', '=', 1)
    .where('end_time', '<', endedBefore)
    .orderBy('end_time')
    .limit(limit);
}
