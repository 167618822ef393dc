import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import { readJobInput } from '../jobs/job-input.ts';
import type { Job, RunView } from '../jobs/job-service.ts';
import { isWithin, relativeTo } from '../storage/paths.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';
import { toVirtual } from './user-path.ts';

/** A job as the API shows it; folders relative to the caller's base path. */
export interface JobViewBody {
  id: string;
  name: string;
  mode: string;
  src_dir: string;
  dst_dir: string;
  include: string[];
  exclude: string[];
  compare: string;
  conflict: string;
  max_delete: number | null;
  schedule: { cron?: string; timezone?: string; every_seconds?: number } | null;
  enabled: boolean;
  next_run_at: string | null;
  owner_id: number;
  created_at: string;
  updated_at: string;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function userPath(principal: Principal, path: string): string {
  return isWithin(path, principal.basePath) ? relativeTo(path, principal.basePath) : path;
}

export function jobView(principal: Principal, job: Job): JobViewBody {
  const s = job.schedule;
  return {
    id: job.id,
    name: job.name,
    mode: job.mode,
    src_dir: userPath(principal, job.srcDir),
    dst_dir: userPath(principal, job.dstDir),
    include: job.options.include,
    exclude: job.options.exclude,
    compare: job.options.compare,
    conflict: job.options.conflict,
    max_delete: job.options.maxDelete,
    schedule: s && {
      ...(s.cron !== undefined && { cron: s.cron }),
      ...(s.timezone !== undefined && { timezone: s.timezone }),
      ...(s.everySeconds !== undefined && { every_seconds: s.everySeconds }),
    },
    enabled: job.enabled,
    next_run_at: job.enabled ? iso(job.nextRunAt) : null,
    owner_id: job.ownerId,
    created_at: new Date(job.createdAt).toISOString(),
    updated_at: new Date(job.updatedAt).toISOString(),
  };
}

/**
 * One run: its task's state (`skipped` for a slot passed over while the last run was going) and
 * the counts the run saved with its task.
 */
export function runView({ run, task, result }: RunView) {
  const skipped = run.state === 'skipped';
  return {
    task_id: run.taskId,
    state: skipped ? 'skipped' : (task?.state ?? 'deleted'),
    /** The schedule's slot that started it; null for a run asked by hand. */
    scheduled_at: iso(run.slot),
    started_at: skipped ? iso(run.createdAt) : iso(task?.startTime ?? null),
    ended_at: skipped ? iso(run.createdAt) : iso(task?.endTime ?? null),
    copied_files: result.copied,
    deleted_files: result.deleted,
    skipped_files: result.skipped,
    failed_files: result.failed,
    bytes: result.bytes,
    error: run.error || task?.error || '',
  };
}

function idOf(request: FastifyRequest): unknown {
  const fromQuery = (request.query as Record<string, unknown> | undefined)?.id;
  if (fromQuery !== undefined) return fromQuery;
  const body = request.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' && !Array.isArray(body) ? body.id : undefined;
}

/**
 * `/api/job/*`: saved transfers (create, list, get, update, delete, run, pause, resume, runs,
 * plan) in AList's envelope. Guests are refused; a general user's folders are below its base
 * path and it sees its own jobs only; an admin sees all.
 */
export async function jobRoutes(app: FastifyInstance): Promise<void> {
  const { jobs } = app.core;
  const route = (
    method: 'GET' | 'POST',
    action: string,
    run: (request: FastifyRequest, principal: Principal) => Promise<unknown>,
  ) =>
    app.route({
      method,
      url: `/api/job/${action}`,
      schema: { tags: ['jobs'], summary: `job ${action}` },
      handler: async (request, reply) => {
        try {
          const principal = await principalOf(request);
          return ok(await run(request, principal));
        } catch (err) {
          return sendError(reply, err);
        }
      },
    });
  const input = (request: FastifyRequest, principal: Principal) =>
    readJobInput(request.body, (path) => toVirtual(principal, path));

  route('POST', 'create', async (request, p) => jobView(p, await jobs.create(p, input(request, p))));
  route('GET', 'list', async (_request, p) => (await jobs.list(p)).map((job) => jobView(p, job)));
  route('GET', 'get', async (request, p) => jobView(p, await jobs.get(p, idOf(request))));
  route('POST', 'update', async (request, p) => {
    const id = idOf(request);
    if (id === undefined) throw new FerryError('E_BAD_REQUEST', 'id is required');
    return jobView(p, await jobs.update(p, id, input(request, p)));
  });
  route('POST', 'delete', async (request, p) => {
    await jobs.delete(p, idOf(request));
    return null;
  });
  route('POST', 'run', async (request, p) => ({
    task: alistTask(await jobs.run(p, idOf(request)), flavourOf(request)),
  }));
  route('POST', 'pause', async (request, p) => jobView(p, await jobs.setEnabled(p, idOf(request), false)));
  route('POST', 'resume', async (request, p) => jobView(p, await jobs.setEnabled(p, idOf(request), true)));
  route('GET', 'runs', async (request, p) => (await jobs.runs(p, idOf(request))).map(runView));
  route('POST', 'plan', async (request, p) => jobs.plan(p, idOf(request)));
}
