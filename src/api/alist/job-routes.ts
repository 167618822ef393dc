import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Principal } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import { toVirtual } from '../../files/user-path.ts';
import { readJobInput } from '../../jobs/job-input.ts';
import type { Job, RunView } from '../../jobs/job-service.ts';
import { isWithin, relativeTo } from '../../storage/paths.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { envelope } from './schemas.ts';
import { alistTask } from './task-view.ts';

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

/** `id` in the query or the body, as AList's clients send either; the job service checks it. */
const QUERY = {
  type: 'object',
  properties: { id: { type: 'string', description: 'the job' } },
};
const ID_BODY = { properties: { id: { description: 'the job' } } };
const JOB_BODY = {
  properties: {
    id: { description: 'update: the job' },
    name: { description: 'string' },
    mode: { description: 'copy | move | sync' },
    src_dir: { description: 'folder (below the caller’s base path)' },
    dst_dir: { description: 'folder (below the caller’s base path)' },
    include: { description: 'array of globs: only matching files are taken' },
    exclude: { description: 'array of globs: left alone on both sides' },
    compare: { description: 'size_mtime (default) | hash' },
    conflict: { description: 'overwrite (default) | skip | keep_both (not for sync)' },
    max_delete: { description: 'integer: most files one sync run may delete' },
    schedule: { description: '{cron: "m h dom mon dow", timezone?} or {every_seconds}' },
    enabled: { description: 'boolean (default true)' },
  },
};

/**
 * `/api/job/*`: saved transfers (create, list, get, update, delete, run, pause, resume, runs,
 * plan) in AList's envelope (see docs/jobs.md). Guests are refused; a general user's folders are
 * below its base path and it sees its own jobs only; an admin sees all. Handlers only throw: the
 * dialect's error handler answers.
 */
export async function alistJobRoutes(app: FastifyInstance): Promise<void> {
  const { jobs } = app.core;
  const route = (
    method: 'GET' | 'POST',
    action: string,
    run: (request: FastifyRequest, principal: Principal) => Promise<unknown>,
    input: { body?: object; reply: string },
  ) =>
    app.route({
      method,
      url: `/api/job/${action}`,
      schema: {
        tags: ['jobs'],
        querystring: QUERY,
        // Fastify takes no body schema on a GET.
        ...(method === 'POST' && { body: input.body ?? ID_BODY }),
        response: envelope(input.reply),
      },
      handler: async (request) => ok(await run(request, await principalOf(request))),
    });
  const input = (request: FastifyRequest, principal: Principal) =>
    readJobInput(request.body, (path) => toVirtual(principal, path));

  route('POST', 'create', async (request, p) => jobView(p, await jobs.create(p, input(request, p))), {
    body: JOB_BODY,
    reply: 'the job, with its id',
  });
  route('GET', 'list', async (_request, p) => (await jobs.list(p)).map((job) => jobView(p, job)), {
    reply: 'every job the caller may see, oldest first',
  });
  route('GET', 'get', async (request, p) => jobView(p, await jobs.get(p, idOf(request))), {
    reply: 'the job',
  });
  route(
    'POST',
    'update',
    async (request, p) => {
      const id = idOf(request);
      if (id === undefined) throw new FerryError('E_BAD_REQUEST', 'id is required');
      return jobView(p, await jobs.update(p, id, input(request, p)));
    },
    { body: JOB_BODY, reply: 'the job' },
  );
  route(
    'POST',
    'delete',
    async (request, p) => {
      await jobs.delete(p, idOf(request));
      return null;
    },
    { reply: 'null' },
  );
  route(
    'POST',
    'run',
    async (request, p) => ({ task: alistTask(await jobs.run(p, idOf(request)), flavourOf(request)) }),
    { reply: '{task}: the run’s task' },
  );
  route('POST', 'pause', async (request, p) => jobView(p, await jobs.setEnabled(p, idOf(request), false)), {
    reply: 'the job',
  });
  route('POST', 'resume', async (request, p) => jobView(p, await jobs.setEnabled(p, idOf(request), true)), {
    reply: 'the job',
  });
  route('GET', 'runs', async (request, p) => (await jobs.runs(p, idOf(request))).map(runView), {
    reply: 'the last 100 runs, newest first',
  });
  route('POST', 'plan', async (request, p) => jobs.plan(p, idOf(request)), {
    reply: '{copy: [paths], delete: [paths], skip: n}: what a run would do now',
  });
}
