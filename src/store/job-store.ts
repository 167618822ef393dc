import type { Kysely, Selectable } from 'kysely';
import type { Database, JobRunsTable, JobsTable } from './schema.ts';

export type JobMode = 'copy' | 'move' | 'sync';
export type JobCompare = 'size_mtime' | 'hash';
export type JobConflict = 'overwrite' | 'skip' | 'keep_both';

/** How a job's run chooses and places files. */
export interface JobOptions {
  /** Globs of paths (relative to `srcDir`) to take; empty = everything. */
  include: string[];
  /** Globs of paths to leave alone, on both sides. */
  exclude: string[];
  compare: JobCompare;
  conflict: JobConflict;
  /** Most files one sync run may delete; null = no limit. */
  maxDelete: number | null;
}

/** 5-field cron in a time zone, or a fixed period. */
export interface JobSchedule {
  cron?: string;
  timezone?: string;
  everySeconds?: number;
}

/** What a job's owner describes (create, update). */
export interface JobFields {
  name: string;
  mode: JobMode;
  /** Virtual paths. */
  srcDir: string;
  dstDir: string;
  options: JobOptions;
  schedule: JobSchedule | null;
  enabled: boolean;
}

export interface Job extends JobFields {
  id: string;
  ownerId: number;
  nextRunAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export type JobRunState = 'started' | 'skipped';

export interface JobRun {
  id: number;
  jobId: string;
  slot: number | null;
  taskId: string | null;
  state: JobRunState;
  error: string;
  createdAt: number;
}

/**
 * Jobs and their runs. A due slot is taken with a compare-and-set on `next_run_at`, so with
 * several nodes on one PostgreSQL exactly one of them starts it; `job_runs (job_id, slot)` is
 * unique besides, so even a slot claimed twice records one run.
 */
export class JobStore {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(job: Job): Promise<void> {
    await this.db.insertInto('jobs').values(toRow(job)).execute();
  }

  async get(id: string): Promise<Job | null> {
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? fromRow(row) : null;
  }

  /** Jobs of one owner, or every job (`ownerId` undefined), oldest first. */
  async list(ownerId?: number): Promise<Job[]> {
    let q = this.db.selectFrom('jobs').selectAll();
    if (ownerId !== undefined) q = q.where('owner_id', '=', ownerId);
    const rows = await q.orderBy('created_at').orderBy('id').execute();
    return rows.map(fromRow);
  }

  /** Replace the job's fields (all but id, owner and created_at). */
  async update(job: Job): Promise<void> {
    const { id, owner_id: _owner, created_at: _created, ...rest } = toRow(job);
    await this.db.updateTable('jobs').set(rest).where('id', '=', id).execute();
  }

  /** Delete the job and its run history. */
  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('job_runs').where('job_id', '=', id).execute();
    await this.db.deleteFrom('jobs').where('id', '=', id).execute();
  }

  /** Enabled jobs whose slot is due at `now`, earliest first. */
  async due(now: number, limit = 100): Promise<Job[]> {
    const rows = await this.db
      .selectFrom('jobs')
      .selectAll()
      .where('enabled', '=', 1)
      .where('next_run_at', 'is not', null)
      .where('next_run_at', '<=', now)
      .orderBy('next_run_at')
      .limit(limit)
      .execute();
    return rows.map(fromRow);
  }

  /**
   * Take the slot `slot` of a job by moving its `next_run_at` on to `next`: true for the one
   * caller whose update found the slot still there, false for every other (another node took it,
   * or the job changed meanwhile).
   */
  async claimSlot(id: string, slot: number, next: number | null): Promise<boolean> {
    const result = await this.db
      .updateTable('jobs')
      .set({ next_run_at: next })
      .where('id', '=', id)
      .where('enabled', '=', 1)
      .where('next_run_at', '=', slot)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Record a run; null when this slot of the job has a run already. */
  async addRun(run: Omit<JobRun, 'id'>): Promise<JobRun | null> {
    const row = await this.db
      .insertInto('job_runs')
      .values({
        job_id: run.jobId,
        slot: run.slot,
        task_id: run.taskId,
        state: run.state,
        error: run.error,
        created_at: run.createdAt,
      })
      .onConflict((oc) => oc.columns(['job_id', 'slot']).doNothing())
      .returningAll()
      .executeTakeFirst();
    return row ? runFromRow(row) : null;
  }

  /**
   * Forget a job's runs beyond the newest `keep`, except the newest that started a task (the
   * overlap check reads it, however many skipped slots came after).
   */
  async prune(jobId: string, keep: number): Promise<void> {
    const cutoff = await this.db
      .selectFrom('job_runs')
      .select('id')
      .where('job_id', '=', jobId)
      .orderBy('id', 'desc')
      .offset(keep)
      .limit(1)
      .executeTakeFirst();
    if (!cutoff) return;
    const last = await this.lastStarted(jobId);
    let q = this.db.deleteFrom('job_runs').where('job_id', '=', jobId).where('id', '<=', Number(cutoff.id));
    if (last) q = q.where('id', '<>', last.id);
    await q.execute();
  }

  async setRunError(id: number, error: string): Promise<void> {
    await this.db.updateTable('job_runs').set({ error }).where('id', '=', id).execute();
  }

  /** The newest run that started a task, if any. */
  async lastStarted(jobId: string): Promise<JobRun | null> {
    const row = await this.db
      .selectFrom('job_runs')
      .selectAll()
      .where('job_id', '=', jobId)
      .where('task_id', 'is not', null)
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? runFromRow(row) : null;
  }

  /** The job's runs, newest first. */
  async runs(jobId: string, limit: number): Promise<JobRun[]> {
    const rows = await this.db
      .selectFrom('job_runs')
      .selectAll()
      .where('job_id', '=', jobId)
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(runFromRow);
  }
}

function toRow(job: Job): JobsTable {
  return {
    id: job.id,
    owner_id: job.ownerId,
    name: job.name,
    mode: job.mode,
    src_dir: job.srcDir,
    dst_dir: job.dstDir,
    options: JSON.stringify(job.options),
    schedule: job.schedule ? JSON.stringify(job.schedule) : null,
    enabled: job.enabled ? 1 : 0,
    next_run_at: job.nextRunAt,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
  };
}

function fromRow(row: Selectable<JobsTable>): Job {
  return {
    id: row.id,
    ownerId: Number(row.owner_id),
    name: row.name,
    mode: row.mode as JobMode,
    srcDir: row.src_dir,
    dstDir: row.dst_dir,
    options: JSON.parse(row.options) as JobOptions,
    schedule: row.schedule ? (JSON.parse(row.schedule) as JobSchedule) : null,
    enabled: Number(row.enabled) === 1,
    // PostgreSQL returns bigint columns as strings.
    nextRunAt: row.next_run_at === null ? null : Number(row.next_run_at),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function runFromRow(row: Selectable<JobRunsTable>): JobRun {
  return {
    id: Number(row.id),
    jobId: row.job_id,
    slot: row.slot === null ? null : Number(row.slot),
    taskId: row.task_id,
    state: row.state as JobRunState,
    error: row.error,
    createdAt: Number(row.created_at),
  };
}
