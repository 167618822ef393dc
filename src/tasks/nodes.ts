import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { NodeRecord, NodeStore } from '../store/node-store.ts';
import type { Runner } from './runner.ts';

/** Rows of nodes silent this long are removed: long enough for an operator to see a node died. */
const FORGET_AFTER_MS = 3_600_000;

/** A live node as `GET /api/admin/nodes` shows it. */
export interface NodeView {
  id: string;
  host: string;
  pid: number;
  startedAt: number;
  heartbeatAt: number;
  /** Running tasks per kind (kinds with none left out). */
  running: Record<string, number>;
  /** Worker limits per kind. */
  workers: Record<string, number>;
}

/**
 * This process as a node of the store: a row in `nodes` renewed as often as its leases, so that
 * an operator sees which nodes are alive, what each runs and its worker limits. A node is live
 * while its heartbeat is younger than a lease: past that its tasks are being taken over anyway.
 */
export class NodeRegistry {
  private timer: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();

  constructor(
    private readonly store: NodeStore,
    private readonly runner: Runner,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  /** This node's id: the runner's lease owner, so a task's `node` names a row here. */
  get id(): string {
    return this.runner.owner;
  }

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(
      () => void this.beat().catch((err) => this.log.warn({ err }, 'node heartbeat failed')),
      Math.max(100, Math.floor(this.leaseMs / 3)),
    );
    this.timer.unref();
  }

  /** Stop beating and remove this node's row: it is gone, not dead. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.store
      .remove(this.id, Date.now() - FORGET_AFTER_MS)
      .catch((err) => this.log.warn({ err }, 'could not remove this node from the store'));
  }

  /** The nodes whose heartbeat is younger than a lease. */
  async live(now = Date.now()): Promise<NodeView[]> {
    return (await this.store.since(now - this.leaseMs)).map((n) => ({ ...n }));
  }

  private async beat(): Promise<void> {
    const now = Date.now();
    const record: NodeRecord = {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      heartbeatAt: now,
      workers: this.runner.getLimits(),
      running: this.runner.runningByKind(),
    };
    await this.store.beat(record);
    await this.store.remove(null, now - FORGET_AFTER_MS);
  }
}
