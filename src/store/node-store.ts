import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';

/** A node's row: what it says of itself at each heartbeat. */
export interface NodeRecord {
  id: string;
  host: string;
  pid: number;
  startedAt: number;
  heartbeatAt: number;
  workers: Record<string, number>;
  running: Record<string, number>;
}

/**
 * The `nodes` table: one row per ferry process sharing the store, written by that process only
 * (its heartbeat), read by any (`GET /api/admin/nodes`). A row whose heartbeat stopped is a dead
 * node's; it is pruned after a while by whichever node beats next.
 */
export class NodeStore {
  constructor(private readonly db: Kysely<Database>) {}

  /** Write `node`'s row (insert or replace): its start and each heartbeat. */
  async beat(node: NodeRecord): Promise<void> {
    const row = {
      id: node.id,
      host: node.host,
      pid: node.pid,
      started_at: node.startedAt,
      heartbeat_at: node.heartbeatAt,
      workers: JSON.stringify(node.workers),
      running: JSON.stringify(node.running),
    };
    const { id: _id, ...changes } = row;
    await this.db
      .insertInto('nodes')
      .values(row)
      .onConflict((oc) => oc.column('id').doUpdateSet(changes))
      .execute();
  }

  /** Nodes whose last heartbeat is at or after `since`, oldest start first. */
  async since(since: number): Promise<NodeRecord[]> {
    const rows = await this.db
      .selectFrom('nodes')
      .selectAll()
      .where('heartbeat_at', '>=', since)
      .orderBy('started_at')
      .orderBy('id')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      host: r.host,
      pid: Number(r.pid),
      startedAt: Number(r.started_at),
      heartbeatAt: Number(r.heartbeat_at),
      workers: parse(r.workers),
      running: parse(r.running),
    }));
  }

  /** Remove `id`'s row (a clean stop), and rows whose heartbeat is older than `before` (dead nodes). */
  async remove(id: string | null, before: number): Promise<void> {
    await this.db
      .deleteFrom('nodes')
      .where((eb) =>
        id === null
          ? eb('heartbeat_at', '<', before)
          : eb.or([eb('id', '=', id), eb('heartbeat_at', '<', before)]),
      )
      .execute();
  }
}

function parse(text: string): Record<string, number> {
  try {
    return JSON.parse(text) as Record<string, number>;
  } catch {
    return {};
  }
}
