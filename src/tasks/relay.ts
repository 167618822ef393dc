import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { PgNotices } from '../store/pg-notices.ts';
import type { TaskStore } from '../store/task-store.ts';
import type { RemovedTask, TaskEvents } from './events.ts';

/** Changes are gathered this long and sent as one notice (a busy node sends ten a second). */
const GATHER_MS = 100;
/** Largest notice: PostgreSQL refuses payloads from 8,000 bytes. */
const MAX_NOTICE_BYTES = 7000;

/** One notice: which node sent it, the ids of tasks it changed, the tasks it removed. */
interface Notice {
  node: string;
  changed: string[];
  removed: RemovedTask[];
}

/**
 * Carries task changes between nodes that share a PostgreSQL store, so an SSE stream (or a
 * request waiting for a task) on one node sees the tasks other nodes run. Each node sends the ids
 * of the tasks it changed, gathered for 100 ms, on a LISTEN/NOTIFY channel; a node that hears
 * them reads those tasks from the store and emits them as remote changes, but only while
 * something listens (a node without SSE clients reads nothing). Removals carry what listeners
 * filter on (id, kind, creator): the rows are gone.
 */
export class TaskRelay {
  private readonly node = randomBytes(6).toString('hex');
  private changed = new Set<string>();
  private removed: RemovedTask[] = [];
  private timer: NodeJS.Timeout | null = null;
  private offs: (() => void)[] = [];

  constructor(
    private readonly notices: PgNotices,
    private readonly events: TaskEvents,
    private readonly store: TaskStore,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.offs = [
      this.events.onLocal((task) => {
        this.changed.add(task.id);
        this.gather();
      }),
      this.events.onLocalRemoved((tasks) => {
        for (const t of tasks) {
          this.changed.delete(t.id);
          this.removed.push({ id: t.id, kind: t.kind, creatorId: t.creatorId });
        }
        this.gather();
      }),
    ];
    this.notices.onNotice((payload) => {
      this.receive(payload).catch((err) => this.log.warn({ err }, 'could not relay task changes'));
    });
  }

  /** Send what is gathered and stop. */
  async stop(): Promise<void> {
    for (const off of this.offs) off();
    this.offs = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.send();
  }

  private gather(): void {
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.send().catch((err) => this.log.warn({ err }, 'could not tell other nodes of task changes'));
    }, GATHER_MS);
  }

  private async send(): Promise<void> {
    const changed = [...this.changed];
    const removed = this.removed;
    this.changed = new Set();
    this.removed = [];
    let notice: Notice = { node: this.node, changed: [], removed: [] };
    let bytes = JSON.stringify(notice).length;
    const items: ({ id: string } | RemovedTask)[] = [...changed.map((id) => ({ id })), ...removed];
    for (const item of items) {
      const size = JSON.stringify(item).length + 1;
      if (bytes + size > MAX_NOTICE_BYTES) {
        await this.notices.publish(JSON.stringify(notice));
        notice = { node: this.node, changed: [], removed: [] };
        bytes = JSON.stringify(notice).length;
      }
      if ('kind' in item) notice.removed.push(item);
      else notice.changed.push(item.id);
      bytes += size;
    }
    if (notice.changed.length + notice.removed.length > 0) await this.notices.publish(JSON.stringify(notice));
  }

  private async receive(payload: string): Promise<void> {
    const notice = JSON.parse(payload) as Notice;
    if (notice.node === this.node || !this.events.watched()) return;
    if (notice.changed.length > 0)
      // Without the per-item failures: listeners show tasks, not their failure lists.
      for (const task of await this.store.getMany(notice.changed, { failures: false }))
        this.events.emit(task, { remote: true });
    this.events.emitRemoved(notice.removed, { remote: true });
  }
}
