import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type Config, TASK_KINDS, type TaskKind } from '../config.ts';
import { coerceError, FerryError, isFerryError } from '../errors.ts';
import type { TaskObserver } from '../metrics.ts';
import type { MountRegistry } from '../storage/mounts.ts';
import type { Lease, ProgressPatch, TaskStore } from '../store/task-store.ts';
import { type StopKind, stopKindOf, TaskStopped } from './abort-reason.ts';
import type { TaskEvents } from './events.ts';
import type { FollowUp, TaskKindHandler } from './kinds/kind.ts';
import type { Task } from './model.ts';
import { ProgressTracker } from './progress.ts';

/** Listeners a task's signal may have before Node warns of a leak. */
const TASK_SIGNAL_LISTENERS = 256;

interface Running {
  task: Task;
  /** This attempt's lease: every write for the task names it, and writes nothing once it is lost. */
  lease: Lease;
  /** Aborted with a `TaskStopped` saying why (see `abortWith`). */
  controller: AbortController;
  progress: ProgressTracker;
  /** The kind's code has returned; only the outcome is left to record. Holds no worker. */
  settling: boolean;
  done: Promise<void>;
}

export interface RunnerDeps {
  store: TaskStore;
  events: TaskEvents;
  mounts: MountRegistry;
  kinds: ReadonlyMap<TaskKind, TaskKindHandler>;
  config: Config;
  log: Logger;
  /** Told when each attempt ends (metrics). */
  metrics?: TaskObserver;
}

/**
 * Claims runnable tasks from the store and runs them, each with an AbortSignal, under a lease
 * it renews. One loop polls for work and for cancel flags (the backstop when a cancel arrives
 * through another process); in-process cancels abort at once through `abortLocal`.
 */
export class Runner {
  readonly owner = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly running = new Map<string, Running>();
  private readonly limits: Record<TaskKind, number>;
  private timers: NodeJS.Timeout[] = [];
  private ticking = false;
  private tickAgain = false;
  /**
   * Kinds that may have runnable tasks, each with a generation bumped on every wake: a tick
   * claims only these, and forgets a kind once a claim comes back short — unless it was woken
   * again meanwhile (the generation moved), so a task created during a claim is never missed.
   * With many kinds and a busy queue this saves a claim statement per idle kind per finished task.
   */
  private readonly wanted = new Map<TaskKind, number>();
  private generation = 0;
  private stopped = true;

  constructor(private readonly deps: RunnerDeps) {
    this.limits = { ...deps.config.tasks.workers };
  }

  start(): void {
    this.stopped = false;
    const t = this.deps.config.tasks;
    this.timers = [
      setInterval(() => {
        this.wake();
        this.pollCancels().catch((err) => this.deps.log.warn({ err }, 'cancel poll failed'));
      }, t.pollIntervalMs),
      setInterval(() => void this.flushProgress(), t.progressIntervalMs),
      setInterval(() => void this.renewLeases(), Math.max(100, Math.floor(t.leaseMs / 3))),
    ];
    this.wake();
  }

  /** Stop claiming, abort running tasks and give their leases back so they run again at next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const run of this.running.values()) this.abortWith(run, 'shutdown');
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
  }

  /** Worker limits per kind, as in force now. */
  getLimits(): Record<TaskKind, number> {
    return { ...this.limits };
  }

  /** Change a kind's worker limit at run time. Lowering it lets running tasks finish. */
  setLimit(kind: TaskKind, workers: number): void {
    if (!TASK_KINDS.includes(kind) || !Number.isInteger(workers) || workers < 0 || workers > 256) {
      throw new FerryError('E_BAD_REQUEST', 'workers must be an integer 0..256 for a known kind');
    }
    this.limits[kind] = workers;
    this.wake([kind]);
  }

  /** Stop a task this process runs, at once (a cancel or delete requested through this process). */
  abortLocal(id: string, why: 'canceled' | 'deleted'): void {
    const run = this.running.get(id);
    if (run) this.abortWith(run, why);
  }

  /**
   * Look for work of `kinds` (all by default) soon. Calls coalesce: at most one tick runs at a
   * time. `wake([])` only re-runs the claims still wanted (a worker came free).
   */
  wake(kinds: readonly TaskKind[] = TASK_KINDS): void {
    if (this.stopped) return;
    for (const kind of kinds) this.wanted.set(kind, ++this.generation);
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    setImmediate(() => {
      this.tick()
        .catch((err) => this.deps.log.error({ err }, 'runner tick failed'))
        .finally(() => {
          this.ticking = false;
          if (this.tickAgain) {
            this.tickAgain = false;
            this.wake([]);
          }
        });
    });
  }

  /** The backstop for cancels made through another process: the store's flag, on a timer. */
  private async pollCancels(): Promise<void> {
    if (this.running.size === 0) return;
    for (const { id, deleteRequested } of await this.deps.store.cancelRequested(this.owner)) {
      const run = this.running.get(id);
      if (run) this.abortWith(run, deleteRequested ? 'deleted' : 'canceled');
    }
  }

  /** Claim work for every wanted kind with free workers; the claims share one commit. */
  private async tick(): Promise<void> {
    const { store, config } = this.deps;
    const claimedAt = Date.now();
    await Promise.all(
      [...this.wanted].map(async ([kind, generation]) => {
        const handler = this.deps.kinds.get(kind);
        const free = this.limits[kind] - this.countRunning(kind);
        if (!handler || free <= 0 || this.stopped) return;
        const tasks = await store.claim(kind, this.owner, free, config.tasks.leaseMs, claimedAt, {
          maxInterruptions: config.tasks.maxInterruptions,
        });
        if (tasks.length < free && this.wanted.get(kind) === generation) this.wanted.delete(kind);
        // On a store several nodes share, a task may name a mount another node created just
        // before it: the claim came after both were stored, so a sync now knows the mount. Not
        // longer than a third of the lease: claimed tasks are not renewed until they run.
        if (tasks.length > 0) await this.deps.mounts.syncShared(config.tasks.leaseMs / 3);
        // A task whose first start is this claim has start_time == claimedAt; any other ran before.
        for (const task of tasks) this.launch(task, handler, task.startTime !== claimedAt);
      }),
    );
  }

  private countRunning(kind: TaskKind): number {
    let n = 0;
    for (const run of this.running.values()) if (run.task.kind === kind && !run.settling) n++;
    return n;
  }

  /** Tasks this process runs now, per kind (kinds with none left out). */
  runningByKind(): Partial<Record<TaskKind, number>> {
    const out: Partial<Record<TaskKind, number>> = {};
    for (const run of this.running.values()) out[run.task.kind] = (out[run.task.kind] ?? 0) + 1;
    return out;
  }

  private launch(task: Task, handler: TaskKindHandler, resumed: boolean): void {
    const { config, mounts, log, events } = this.deps;
    events.emit(task);
    const controller = new AbortController();
    // Every file a task moves at once, and every request of it, listens to its signal: more than
    // Node's warning threshold of 10 is normal here, not a leak.
    setMaxListeners(TASK_SIGNAL_LISTENERS, controller.signal);
    const progress = new ProgressTracker(config.tasks.maxItemFailures);
    // A run of the same task still here is an attempt of this process that stalled past its
    // lease and was taken over since: the new claim's attempt is the one that stands.
    const stale = this.running.get(task.id);
    if (stale) this.loseLease(stale, 'claimed again');
    const lease: Lease = { owner: this.owner, token: task.leaseToken };
    const run: Running = {
      task,
      lease,
      controller,
      progress,
      settling: false,
      done: Promise.resolve(),
    };
    this.running.set(task.id, run);
    const taskLog = log.child({ task: task.id, kind: task.kind });
    taskLog.debug({ owner: this.owner, token: lease.token, resumed }, 'task started');
    run.done = handler
      .run(task, {
        signal: controller.signal,
        progress,
        log: taskLog,
        mounts,
        dataDir: config.stagingDir,
        syncFiles: config.syncFiles,
        resumed,
        taskId: task.id,
        savePayload: async (payload) => {
          if (!(await this.deps.store.updatePayload(task.id, lease, payload)))
            this.fenceLost(run, 'saving its state');
        },
        fence: async () => {
          if (controller.signal.aborted) throw controller.signal.reason;
          if (!(await this.deps.store.holds(task.id, lease))) this.fenceLost(run, 'before a final step');
        },
        holds: () => this.deps.store.holds(task.id, lease),
        enqueue: (spec) => this.enqueue(task, spec),
      })
      .then(
        () => null,
        (err: unknown) => coerceError(err),
      )
      .then((err) => {
        // The worker is free once the kind's code returns: the next claim is asked for before the
        // outcome, so both share one commit instead of taking one each.
        run.settling = true;
        this.wake([]);
        return this.settle(run, handler, err);
      })
      .catch((err) => taskLog.error({ err }, 'could not record the task outcome'))
      .finally(() => {
        if (this.running.get(task.id) === run) this.running.delete(task.id);
        this.wake([]);
      });
  }

  /** Insert a follow-up task owned by `parent`'s creator, unless one with its id exists. */
  private async enqueue(parent: Task, spec: FollowUp): Promise<Task> {
    const { store, events, config } = this.deps;
    const existing = await store.get(spec.id);
    if (existing) return existing;
    const [created] = await store.insert([
      {
        id: spec.id,
        kind: spec.kind,
        name: spec.name,
        creatorId: parent.creatorId,
        creator: parent.creator,
        creatorRole: parent.creatorRole,
        payload: spec.payload,
        maxRetry: config.tasks.maxRetry[spec.kind],
      },
    ]);
    if (!created) throw new FerryError('E_INTERNAL', `could not queue ${spec.kind} task`);
    events.emit(created);
    this.wake([spec.kind]);
    return created;
  }

  /** Record how an attempt ended. Every write is guarded by the lease, so a lost lease writes nothing. */
  private async settle(run: Running, handler: TaskKindHandler, err: Error | null): Promise<void> {
    const { store, events, config } = this.deps;
    const { task, progress, lease } = run;
    const stopped = stopKindOf(run.controller.signal);
    if (stopped === 'lease-lost') return;
    // The final counters ride along with the state change: one write per finished task.
    const release = { leaseOwner: null, leaseUntil: null, progress: progress.take() };
    let after: Task | null = null;

    if (stopped === 'shutdown') {
      // Not the task's fault: back to the queue, to resume at the next start. A task canceling
      // meanwhile stays held: the next start's reclaim ends it canceled.
      after = await store.move(task.id, 'pending', {
        from: ['running'],
        lease,
        patch: { ...release, runAt: Date.now() },
      });
    } else if (!err && progress.failedCount === 0) {
      // A cancel that arrives after the last byte is too late: the result is in place, say so.
      after = await store.move(task.id, 'succeeded', {
        from: ['running', 'canceling'],
        lease,
        patch: release,
      });
      if (after) await handler.succeeded?.(after, { dataDir: config.stagingDir, log: this.deps.log });
    } else if (stopped === 'canceled' || stopped === 'deleted' || isFerryError(err, 'E_CANCELED')) {
      after = await store.move(task.id, 'canceled', {
        from: ['running', 'canceling'],
        lease,
        patch: { ...release, error: 'canceled', errorCode: 'E_CANCELED' },
      });
    }
    if (!after && stopped !== 'shutdown') {
      const error = err ?? new FerryError('E_BACKEND', `${progress.failedCount} items failed`);
      after = await this.recordFailure(run, error, release.progress);
    }
    this.observe(task, after, progress.doneBytes);
    // Nothing moved: another node holds the task now (or a user ended it first); say which.
    if (!after && !(await store.holds(task.id, lease))) this.deps.log.warn(lostLog(run), 'lost the lease');
    if (after?.deleteRequested && after.state !== 'running') {
      await handler.discard?.(after, { dataDir: config.stagingDir, log: this.deps.log });
      await store.delete([after.id]);
      events.emitRemoved([after]);
    } else if (after) {
      events.emit(after);
    }
  }

  /** Tell the metrics how an attempt ended; their failure never touches the task. */
  private observe(task: Task, after: Task | null, bytesMoved: number): void {
    try {
      this.deps.metrics?.attemptEnded(task, after, bytesMoved);
    } catch (err) {
      this.deps.log.warn({ err }, 'metrics update failed');
    }
  }

  /** A failed attempt: fail now (unrecoverable, or retries used up) or wait and retry. */
  private async recordFailure(run: Running, error: Error, counters: ProgressPatch): Promise<Task | null> {
    const { store, config } = this.deps;
    const { task } = run;
    const message = describe(error, run.progress);
    const release = { leaseOwner: null, leaseUntil: null };
    const attempts = task.attempts + 1;
    const unrecoverable = error instanceof FerryError ? error.unrecoverable : false;
    const lease = run.lease;
    const errored = await store.move(task.id, 'errored', {
      from: ['running', 'canceling'],
      lease,
      patch: {
        error: message,
        errorCode: error instanceof FerryError ? error.code : 'E_BACKEND',
        attempts,
        progress: counters,
      },
    });
    if (!errored) return null;
    this.deps.events.emit(errored);
    if (errored.cancelRequested) {
      return store.move(task.id, 'canceled', { from: ['errored'], lease, patch: release });
    }
    if (unrecoverable || attempts > task.maxRetry) {
      this.deps.log.warn({ task: task.id, err: error }, 'task failed');
      await store.move(task.id, 'failing', { from: ['errored'], lease });
      return store.move(task.id, 'failed', { from: ['failing'], lease, patch: release });
    }
    const t = config.tasks;
    const delay = Math.min(t.retryMaxDelayMs, t.retryBaseDelayMs * 2 ** (attempts - 1));
    this.deps.log.info({ task: task.id, attempts, delay, err: error }, 'task will retry');
    return store.move(task.id, 'waiting_retry', {
      from: ['errored'],
      lease,
      patch: { ...release, runAt: Date.now() + delay },
    });
  }

  /**
   * The store refused a write of `run`'s attempt: its lease is gone (another node took the task
   * over). Stop its work at once and throw what its signal carries, so the kind writes no more.
   */
  private fenceLost(run: Running, when: string): never {
    this.loseLease(run, when);
    throw run.controller.signal.reason;
  }

  /** `run`'s attempt no longer holds its task: stop it without writing anything, and say so once. */
  private loseLease(run: Running, when: string): void {
    if (stopKindOf(run.controller.signal) === 'lease-lost') return;
    this.deps.log.warn({ ...lostLog(run), when }, 'lost the lease');
    // A stop asked for before (a cancel, a shutdown) gives way: none of its writes would land.
    if (run.controller.signal.aborted) return;
    this.abortWith(run, 'lease-lost');
  }

  /** Abort `run`'s signal with a typed reason; the first reason stands. */
  private abortWith(run: Running, why: StopKind): void {
    if (run.controller.signal.aborted) return;
    run.controller.abort(new TaskStopped(why));
  }

  /** Write the counters of every running task that changed; the writes share one commit. */
  private async flushProgress(): Promise<void> {
    const { store, events } = this.deps;
    const dirty = [...this.running.values()].filter(
      (run) => run.progress.dirty && !run.controller.signal.aborted,
    );
    await Promise.all(
      dirty.map(async (run) => {
        const patch = run.progress.take();
        try {
          if (!(await store.saveProgress(run.task.id, run.lease, patch))) {
            if (!run.settling) this.loseLease(run, 'writing progress');
            return;
          }
          Object.assign(run.task, patch, { updatedAt: Date.now() });
          events.emit({ ...run.task, failures: run.progress.failures });
        } catch (err) {
          this.deps.log.warn({ err, task: run.task.id }, 'progress write failed');
        }
      }),
    );
  }

  private async renewLeases(): Promise<void> {
    if (this.running.size === 0) return;
    const ids = [...this.running.keys()];
    try {
      const until = Date.now() + this.deps.config.tasks.leaseMs;
      const held = new Map(
        (await this.deps.store.renewLeases(this.owner, ids, until)).map((h) => [h.id, h.token]),
      );
      for (const id of ids) {
        const run = this.running.get(id);
        if (!run) continue;
        // A settling run's outcome may have been recorded (its lease released) meanwhile.
        if (held.get(id) !== run.lease.token) {
          if (!run.settling) this.loseLease(run, 'renewing');
        } else run.task.leaseUntil = until;
      }
    } catch (err) {
      this.deps.log.warn({ err }, 'lease renewal failed');
    }
  }
}

function lostLog(run: Running) {
  return { task: run.task.id, kind: run.task.kind, token: run.lease.token };
}

/** The task's error text: the error, and for a directory task its first failed item. */
function describe(error: Error, progress: ProgressTracker): string {
  const first = progress.failures[0];
  return first ? `${error.message}; first: ${first.path}: ${first.error}` : error.message;
}
