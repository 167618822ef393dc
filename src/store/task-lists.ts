/*
 * The store's reads of many tasks at once: which tasks a list covers (`TaskFilter`) and which
 * page of them (`PageRequest`, keyset or offset), that page and its count, tasks by id in bulk,
 * and the two lists the retention sweep works through. `TaskStore` exposes each as a method.
 */

import type { Kysely } from 'kysely';
import type { TaskKind } from '../config.ts';
import type { Task, TaskState } from '../tasks/model.ts';
import type { Database } from './schema.ts';
import type { SqliteWrites } from './sqlite-writes.ts';
import { LIST_COLUMNS, listRowOf, toTask } from './task-rows.ts';

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

/** The tasks of `ids` that exist; with `failures: false` without their per-item failures (as `list`). */
export async function selectMany(
  db: Kysely<Database>,
  ids: readonly string[],
  options: { failures?: boolean } = {},
): Promise<Task[]> {
  const out: Task[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    const from = db.selectFrom('tasks');
    const rows = await (options.failures === false ? from.select(LIST_COLUMNS) : from.selectAll())
      .where('id', 'in', chunk)
      .execute();
    out.push(...rows.map(toTask));
  }
  return out;
}

/**
 * One page of tasks matching `filter`, ordered by `seq`. Deleted-but-running tasks are hidden.
 * The per-item `failures` are not loaded (up to 1,000 per task: a page of such tasks would be
 * megabytes to parse); they read as `[]` here, and `get` has them. `fast`: read through SQLite's
 * prepared statements when the store has them (see `SqliteWrites.selectValues`).
 */
export async function selectPage(
  db: Kysely<Database>,
  fast: SqliteWrites | null,
  filter: TaskFilter,
  page: PageRequest,
): Promise<Task[]> {
  let q = filtered(db, filter).select(LIST_COLUMNS);
  if (page.afterSeq !== undefined) q = q.where('seq', page.order === 'asc' ? '>' : '<', page.afterSeq);
  q = q.orderBy('seq', page.order).limit(page.limit);
  if (page.offset) q = q.offset(page.offset);
  if (fast) {
    const { sql: text, parameters } = q.compile();
    return fast.selectValues(text, parameters).map((values) => toTask(listRowOf(values)));
  }
  return (await q.execute()).map(toTask);
}

/** How many tasks match `filter` (deleted-but-running ones are not counted, as `selectPage` hides them). */
export async function countMatching(db: Kysely<Database>, filter: TaskFilter): Promise<number> {
  const row = await filtered(db, filter)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

function filtered(db: Kysely<Database>, filter: TaskFilter) {
  let q = db.selectFrom('tasks').where('delete_requested', '=', 0);
  if (filter.kinds) q = q.where('kind', 'in', filter.kinds.length ? [...filter.kinds] : ['']);
  if (filter.creatorId !== undefined) q = q.where('creator_id', '=', filter.creatorId);
  if (filter.done !== undefined) q = q.where('done', '=', filter.done ? 1 : 0);
  if (filter.states) q = q.where('state', 'in', filter.states.length ? [...filter.states] : ['']);
  if (filter.ids) q = q.where('id', 'in', filter.ids.length ? [...filter.ids] : ['']);
  return q;
}

/** Finished tasks whose delete was asked for while they ran (their worker died before removing them). */
export async function selectDeletedAndFinished(db: Kysely<Database>, limit: number): Promise<Task[]> {
  const rows = await db
    .selectFrom('tasks')
    .selectAll()
    .where('delete_requested', '=', 1)
    .where('done', '=', 1)
    .limit(limit)
    .execute();
  return rows.map(toTask);
}

/** Finished tasks that ended before `endedBefore`, oldest first: the retention sweep's input. */
export async function selectExpired(
  db: Kysely<Database>,
  endedBefore: number,
  limit: number,
): Promise<Task[]> {
  const rows = await db
    .selectFrom('tasks')
    .selectAll()
    .where('done', '=', 1)
    .where('end_time', '<', endedBefore)
    .orderBy('end_time')
    .limit(limit)
    .execute();
  return rows.map(toTask);
}
