import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';

/**
 * How many tasks of each kind are in each state: one grouped count, for the `ferry_tasks` gauge
 * at scrape time. Every task is counted, a deleted-but-running one too (it still holds a worker).
 */
export async function countTasksByKindAndState(
  db: Kysely<Database>,
): Promise<{ kind: string; state: string; count: number }[]> {
  const rows = await db
    .selectFrom('tasks')
    .select(['kind', 'state', (eb) => eb.fn.countAll<number | string>().as('n')])
    .groupBy(['kind', 'state'])
    .execute();
  return rows.map((r) => ({ kind: r.kind, state: r.state, count: Number(r.n) }));
}
