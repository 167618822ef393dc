import { nanoid } from 'nanoid';
import type { Logger } from 'pino';
import { type AuthService, toPrincipal } from '../auth/auth-service.ts';
import { can, isAdmin, isGuest, type Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import type { MountRegistry } from '../storage/mounts.ts';
import { isWithin } from '../storage/paths.ts';
import type { Job, JobRun, JobStore } from '../store/job-store.ts';
import type { TaskStore } from '../store/task-store.ts';
import { type TreeRunPayload, treeRunName } from '../tasks/definitions/sync.ts';
import type { TaskEvents } from '../tasks/events.ts';
import { type TreeRunResult, treeSpecOf } from '../tasks/kinds/sync.ts';
import { deletedFiles, deletedPaths, planTree } from '../tasks/kinds/sync-plan.ts';
import { isDone, type Task } from '../tasks/model.ts';
import type { TaskService } from '../tasks/service.ts';
import type { JobInput } from './job-input.ts';
import { nextSlot } from './schedule.ts';

// The API renders jobs without importing the store.
export type { Job } from '../store/job-store.ts';

/** How often a node looks for due jobs. */
const TICK_MS = 500;
/** Most runs `runs` answers. */
const MAX_RUNS = 100;
/** Runs kept per job (a schedule every second while a long run goes adds one skipped run a second). */
const KEEP_RUNS = 1000;
/** Most paths of each list `plan` answers (the counts are always whole). */
const MAX_PLAN_PATHS = 10_000;

/** One run as the API shows it: its task's state and counts, or a skipped slot. */
export interface RunView {
  run: JobRun;
  /** The run's task; null for a skipped slot, or a task deleted since. */
  task: Task | null;
  result: TreeRunResult;
}

/** A dry run: what `run` would copy and delete now, and how many files it would leave. */
export interface PlanView {
  copy: string[];
  delete: string[];
  skip: number;
  /** Present when a list was cut at `MAX_PLAN_PATHS`: the whole counts. */
  copy_count?: number;
  delete_count?: number;
}

/**
 * Counts a run's outcome on this node (`ferry_job_runs_total{outcome}`): the task's final state
 * (`succeeded`, `failed`, `canceled`) once per run that finished here, `skipped` per slot passed
 * over here. The `job.run.finished` webhook is not sent from here but written with the task's
 * final state (see `jobOfRun`), so it survives a crash between the two.
 */
export type CountRun = (outcome: string) => void;

/**
 * Saved transfers that create ordinary tasks, by hand or on a schedule. Every method takes the
 * caller: guests are refused, a general user sees its own jobs only (another's is
 * `E_JOB_NOT_FOUND`, as a missing one), an admin all. Each node ticks; a due slot is claimed in
 * the store by compare-and-set (`JobStore.claimSlot`), so with several nodes one starts it.
 */
export class JobService {
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private unsubscribe: (() => void) | null = null;
  /** Per job, the start under way on this node (see `startRun`). */
  private readonly starting = new Map<string, Promise<void>>();
  /** Finished runs already reported by this node (a done task may be emitted more than once). */
  private readonly reported = new Set<string>();

  constructor(
    private readonly store: JobStore,
    private readonly taskStore: TaskStore,
    private readonly tasks: TaskService,
    private readonly events: TaskEvents,
    private readonly mounts: MountRegistry,
    private readonly auth: AuthService,
    private readonly log: Logger,
    private readonly countRun: CountRun = () => undefined,
  ) {}

  async create(principal: Principal, input: JobInput): Promise<Job> {
    this.checkMayOwn(principal, input);
    const now = Date.now();
    const job: Job = {
      id: nanoid(12),
      ownerId: principal.id,
      ...input,
      nextRunAt: nextSlot(input.schedule, now),
      createdAt: now,
      updatedAt: now,
    };
    await this.store.insert(job);
    return job;
  }

  async list(principal: Principal): Promise<Job[]> {
    refuseGuest(principal);
    return this.store.list(isAdmin(principal) ? undefined : principal.id);
  }

  /** The job, when the caller may see it; else `E_JOB_NOT_FOUND`. */
  async get(principal: Principal, id: unknown): Promise<Job> {
    refuseGuest(principal);
    if (typeof id !== 'string' || id === '' || id.length > 64) throw notFound();
    const job = await this.store.get(id);
    if (!job || (!isAdmin(principal) && job.ownerId !== principal.id)) throw notFound();
    return job;
  }

  /** Replace a job's settings; a changed schedule starts from now. */
  async update(principal: Principal, id: unknown, input: JobInput): Promise<Job> {
    const job = await this.get(principal, id);
    this.checkMayOwn(principal, input);
    const now = Date.now();
    const sameSchedule = JSON.stringify(job.schedule) === JSON.stringify(input.schedule);
    const updated: Job = {
      ...job,
      ...input,
      nextRunAt: sameSchedule && job.nextRunAt !== null ? job.nextRunAt : nextSlot(input.schedule, now),
      updatedAt: now,
    };
    await this.store.update(updated);
    return updated;
  }

  async delete(principal: Principal, id: unknown): Promise<void> {
    const job = await this.get(principal, id);
    await this.store.delete(job.id);
  }

  /** Pause (no scheduled runs; by hand still works) or resume (from the next slot after now). */
  async setEnabled(principal: Principal, id: unknown, enabled: boolean): Promise<Job> {
    const job = await this.get(principal, id);
    const now = Date.now();
    const updated: Job = { ...job, enabled, nextRunAt: nextSlot(job.schedule, now), updatedAt: now };
    await this.store.update(updated);
    return updated;
  }

  /** Start a run now. `E_TASK_STATE` while the job's last run is still going. */
  async run(principal: Principal, id: unknown): Promise<Task> {
    const job = await this.get(principal, id);
    const started = await this.startRun(job, null);
    if (!started) throw new FerryError('E_TASK_STATE', "the job's last run is still going");
    return started;
  }

  async runs(principal: Principal, id: unknown): Promise<RunView[]> {
    const job = await this.get(principal, id);
    const runs = await this.store.runs(job.id, MAX_RUNS);
    const ids = runs.flatMap((r) => (r.taskId ? [r.taskId] : []));
    const tasks = new Map((await this.taskStore.getMany(ids)).map((t) => [t.id, t]));
    return runs.map((run) => {
      const task = (run.taskId && tasks.get(run.taskId)) || null;
      return { run, task, result: resultOf(task) };
    });
  }

  /** What a run would do now, with nothing changed; the data-loss guards refuse as a run would. */
  async plan(principal: Principal, id: unknown): Promise<PlanView> {
    const job = await this.get(principal, id);
    const spec = treeSpecOf(payloadOf(job), (path) => this.mounts.resolve(path));
    const plan = await planTree(spec, AbortSignal.timeout(10 * 60_000));
    return {
      copy: plan.copies.slice(0, MAX_PLAN_PATHS).map((c) => c.rel),
      delete: deletedPaths(plan).slice(0, MAX_PLAN_PATHS),
      skip: plan.skipped,
      ...(deletedFiles(plan) > MAX_PLAN_PATHS || plan.copies.length > MAX_PLAN_PATHS
        ? { copy_count: plan.copies.length, delete_count: deletedFiles(plan) }
        : {}),
    };
  }

  /** Start ticking (due runs, including one for each slot missed while no node ran). */
  start(): void {
    if (this.timer) return;
    this.unsubscribe = this.events.onLocal((task) => {
      if (isDone(task.state)) this.finished(task);
    });
    const tick = () => {
      this.ticking ??= this.tick()
        .catch((err) => this.log.warn({ err }, 'job scheduler tick failed'))
        .finally(() => {
          this.ticking = null;
        });
    };
    this.timer = setInterval(tick, TICK_MS);
    this.timer.unref();
    tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.ticking;
  }

  /** Start every due slot this node manages to claim. */
  private async tick(): Promise<void> {
    const now = Date.now();
    for (const job of await this.store.due(now)) {
      const slot = job.nextRunAt;
      if (slot === null) continue;
      if (!(await this.store.claimSlot(job.id, slot, nextSlot(job.schedule, now, slot)))) continue;
      try {
        await this.startRun(job, slot);
      } catch (err) {
        this.log.warn({ err, job: job.id, slot }, 'a scheduled job run failed to start');
      }
    }
  }

  /**
   * Start a run of `job` for `slot` (null: by hand). When its last run is still going, a
   * scheduled slot is recorded as skipped and nothing starts; null is returned either way.
   */
  private async startRun(job: Job, slot: number | null): Promise<Task | null> {
    // Two starts of one job at once on this node (two clicks on run, or a click as its slot comes)
    // would both find no run going: one waits for the other.
    const before = this.starting.get(job.id) ?? Promise.resolve();
    const mine = before.then(() => this.startRunNow(job, slot));
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.starting.set(job.id, settled);
    try {
      return await mine;
    } finally {
      if (this.starting.get(job.id) === settled) this.starting.delete(job.id);
      await this.store
        .prune(job.id, KEEP_RUNS)
        .catch((err) => this.log.warn({ err, job: job.id }, 'pruning job runs failed'));
    }
  }

  private async startRunNow(job: Job, slot: number | null): Promise<Task | null> {
    const now = Date.now();
    const last = await this.store.lastStarted(job.id);
    const lastTask = last?.taskId ? await this.taskStore.get(last.taskId) : null;
    if (lastTask && !isDone(lastTask.state)) {
      if (slot !== null)
        await this.store.addRun({
          jobId: job.id,
          slot,
          taskId: null,
          state: 'skipped',
          error: `the last run (task ${lastTask.id}) was still going`,
          createdAt: now,
        });
      if (slot !== null) this.countRun('skipped');
      return null;
    }
    let owner: Principal;
    try {
      owner = await this.ownerOf(job);
    } catch (err) {
      if (slot === null) throw err;
      await this.store.addRun({
        jobId: job.id,
        slot,
        taskId: null,
        state: 'skipped',
        error: (err as Error).message,
        createdAt: now,
      });
      this.countRun('skipped');
      return null;
    }
    const taskId = nanoid();
    // The run is recorded before its task exists: a slot that has a run was started, and no
    // other node can record a second one for it (unique job_id, slot).
    const run = await this.store.addRun({
      jobId: job.id,
      slot,
      taskId,
      state: 'started',
      error: '',
      createdAt: now,
    });
    if (!run) return null;
    try {
      const payload = payloadOf(job);
      // A copy or move job's run is a task of that kind with the run's payload (its kind reads
      // either form); a sync job's is a `sync` task.
      const [task] = await this.tasks.create(owner, [
        {
          id: taskId,
          kind: job.mode,
          name: treeRunName(payload, (path) => this.mounts.resolve(path)),
          payload,
        },
      ]);
      if (!task) throw new FerryError('E_INTERNAL', 'no task was created');
      this.log.debug({ job: job.id, slot, task: task.id }, 'job run started');
      return task;
    } catch (err) {
      await this.store.setRunError(run.id, (err as Error).message);
      throw err;
    }
  }

  /** A task finished on this node: when it is a job's run, count it once. */
  private finished(task: Task): void {
    const job = task.payload.job as { id?: unknown; name?: unknown } | undefined;
    if (!job || typeof job.id !== 'string' || this.reported.has(task.id)) return;
    this.reported.add(task.id);
    // A bounded memory of what was reported: a task is finished once, the set only guards repeats.
    if (this.reported.size > 10_000) this.reported.clear();
    this.countRun(task.state);
  }

  /**
   * The job's owner as it is now, who must still be allowed the job: a user disabled, deleted,
   * moved to another base path or stripped of a permission since the job was saved runs nothing.
   */
  private async ownerOf(job: Job): Promise<Principal> {
    const user = await this.auth.getUser(job.ownerId).catch(() => {
      throw new FerryError('E_FORBIDDEN', "the job's owner no longer exists");
    });
    if (user.disabled) throw new FerryError('E_FORBIDDEN', "the job's owner is disabled");
    const owner = toPrincipal(user);
    if (!isAdmin(owner) && !(isWithin(job.srcDir, owner.basePath) && isWithin(job.dstDir, owner.basePath)))
      throw new FerryError('E_FORBIDDEN', "the job's folders are outside its owner's base path");
    this.checkMayOwn(owner, job);
    return owner;
  }

  /**
   * A general user may own a job only with write permission and the one its mode needs (a sync
   * deletes too), on folders below its base path (the input's paths are already virtual). Both
   * folders must be mounted, and neither may hold the other.
   */
  private checkMayOwn(principal: Principal, input: Pick<JobInput, 'mode' | 'srcDir' | 'dstDir'>): void {
    refuseGuest(principal);
    const needed = input.mode === 'copy' ? ['COPY'] : input.mode === 'move' ? ['MOVE'] : ['COPY', 'REMOVE'];
    for (const permission of ['WRITE', ...needed] as const) {
      if (!can(principal, permission as 'WRITE'))
        throw new FerryError('E_FORBIDDEN', `permission denied: ${permission.toLowerCase()}`);
    }
    const src = this.mounts.resolve(input.srcDir);
    const dst = this.mounts.resolve(input.dstDir);
    if (src.mount === dst.mount && (isWithin(dst.path, src.path) || isWithin(src.path, dst.path)))
      throw new FerryError('E_BAD_REQUEST', 'src_dir and dst_dir must not hold one another');
  }
}

/** What a job's run task carries (see `TreeRunPayload`). */
function payloadOf(job: Job): TreeRunPayload {
  return {
    job: { id: job.id, name: job.name },
    mode: job.mode,
    srcDir: job.srcDir,
    dstDir: job.dstDir,
    include: job.options.include,
    exclude: job.options.exclude,
    compare: job.options.compare,
    conflict: job.options.conflict,
    maxDelete: job.options.maxDelete,
  };
}

function resultOf(task: Task | null): TreeRunResult {
  const r = (task?.payload.result ?? {}) as Partial<TreeRunResult>;
  const n = (v: unknown) => (typeof v === 'number' ? v : 0);
  return {
    copied: n(r.copied),
    deleted: n(r.deleted),
    skipped: n(r.skipped),
    failed: n(r.failed),
    bytes: n(r.bytes),
  };
}

function refuseGuest(principal: Principal): void {
  if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
}

function notFound(): FerryError {
  return new FerryError('E_JOB_NOT_FOUND', 'job not found');
}
