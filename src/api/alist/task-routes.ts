import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../../auth/roles.ts';
import { TASK_KINDS, type TaskKind } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import { TASK_STATES, type TaskState } from '../../tasks/model.ts';
import type { TaskFilter, TaskService } from '../../tasks/service.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { envelope } from './schemas.ts';
import { alistTask } from './task-view.ts';

type Method = 'GET' | 'POST';

interface ActionArgs {
  tasks: TaskService;
  principal: Principal;
  kind: TaskKind;
  request: FastifyRequest;
  reply: FastifyReply;
}

/** The seed's twelve actions, with the HTTP method each uses. */
const ACTIONS: Record<string, { method: Method; run: (a: ActionArgs) => Promise<unknown> }> = {
  info: {
    method: 'POST',
    // The seed's reply for info is a one-element array; today's AList answers the task itself.
    run: async ({ tasks, principal, request, kind }) => {
      const flavour = flavourOf(request);
      const found = await tasks.get(principal, query(request).tid, kind);
      const task = alistTask(found, flavour, { withFailures: true, holder: tasks.holder(found) });
      return ok(flavour === 'current' ? task : [task]);
    },
  },
  done: { method: 'GET', run: (a) => listTasks(a, true) },
  undone: { method: 'GET', run: (a) => listTasks(a, false) },
  delete: { method: 'POST', run: (a) => single(a, (id) => a.tasks.delete(a.principal, id, a.kind)) },
  cancel: { method: 'POST', run: (a) => single(a, (id) => a.tasks.cancel(a.principal, id, a.kind)) },
  retry: { method: 'POST', run: (a) => single(a, (id) => a.tasks.retry(a.principal, id, a.kind)) },
  clear_done: {
    method: 'POST',
    run: async (a) => {
      await a.tasks.clear(a.principal, a.kind, 'done');
      return ok(null);
    },
  },
  clear_succeeded: {
    method: 'POST',
    run: async (a) => {
      await a.tasks.clear(a.principal, a.kind, 'succeeded');
      return ok(null);
    },
  },
  retry_failed: {
    method: 'POST',
    run: async (a) => {
      await a.tasks.retryFailed(a.principal, a.kind);
      return ok(null);
    },
  },
  // Body: JSON array of ids; reply: id → error for the ids that failed.
  delete_some: {
    method: 'POST',
    run: async (a) => ok(await a.tasks.deleteSome(a.principal, a.request.body, a.kind)),
  },
  cancel_some: {
    method: 'POST',
    run: async (a) => ok(await a.tasks.cancelSome(a.principal, a.request.body, a.kind)),
  },
  retry_some: {
    method: 'POST',
    run: async (a) => ok(await a.tasks.retrySome(a.principal, a.request.body, a.kind)),
  },
};

/**
 * AList's task API: `/api/task/<type>/<action>`, also under `/api/admin/task/…` for old
 * scripts. Same rules on both: guests get 403, general users their own tasks, admins all.
 */
export async function alistTaskRoutes(app: FastifyInstance): Promise<void> {
  // One route per method: Fastify takes no body schema on a GET.
  for (const [prefix, method] of ['/api/task', '/api/admin/task'].flatMap((p) =>
    (['GET', 'POST'] as const).map((m) => [p, m] as const),
  )) {
    app.route({
      method,
      url: `${prefix}/:type/:action`,
      schema: {
        tags: ['alist'],
        summary: 'AList task API: one of twelve actions on one task type',
        params: {
          type: 'object',
          properties: {
            type: { type: 'string', description: TASK_KINDS.join(' | ') },
            action: { type: 'string', description: Object.keys(ACTIONS).join(' | ') },
          },
        },
        querystring: {
          type: 'object',
          properties: {
            tid: { type: 'string', description: 'task id (info, delete, cancel, retry)' },
            page: { type: 'string', description: 'done/undone: page number, with per_page' },
            per_page: { type: 'string' },
            limit: { type: 'string', description: 'done/undone: page size, with cursor' },
            cursor: { type: 'string', description: 'done/undone: X-Next-Cursor of the previous page' },
            state: { type: 'string', description: 'done/undone: comma-separated states (names or 0–9)' },
            creator: { type: 'string', description: 'done/undone: creator username (admins)' },
          },
        },
        // Checked by the task service, which says which id is wrong.
        ...(method === 'POST' && {
          body: { description: 'delete_some, cancel_some, retry_some: a JSON array of task ids' },
        }),
        response: envelope(
          'info: the task (a one-element array in the seed flavour); done/undone: [task]; *_some: id → error for the ids that failed; else null',
        ),
      },
      handler: async (request, reply) => {
        const { type, action } = request.params as { type: string; action: string };
        if (!(TASK_KINDS as readonly string[]).includes(type)) {
          throw new FerryError(
            'E_BAD_REQUEST',
            `unknown task type "${type}"; one of: ${TASK_KINDS.join(', ')}`,
          );
        }
        const spec = ACTIONS[action];
        if (!spec || !Object.hasOwn(ACTIONS, action)) {
          throw new FerryError(
            'E_BAD_REQUEST',
            `unknown task action "${action}"; one of: ${Object.keys(ACTIONS).join(', ')}`,
          );
        }
        if (request.method !== spec.method) {
          return reply.send({ code: 405, message: `use ${spec.method} for ${action}`, data: null });
        }
        const principal = await principalOf(request);
        return await spec.run({ tasks: app.core.tasks, principal, kind: type as TaskKind, request, reply });
      },
    });
  }
}

function query(request: FastifyRequest): Record<string, string | undefined> {
  return (request.query ?? {}) as Record<string, string | undefined>;
}

async function single(a: ActionArgs, action: (id: string) => Promise<void>) {
  const tid = query(a.request).tid;
  if (!tid) throw new FerryError('E_BAD_REQUEST', 'tid is required');
  await action(tid);
  return ok(null);
}

/**
 * `done`/`undone`. Without paging parameters the whole list, streamed page by page from the
 * store so a million tasks never sit in memory. With `page`+`per_page` (offset) or `limit`
 * (+ `cursor` from the previous reply's `X-Next-Cursor` header) one page. `state` (comma
 * separated) and `creator` (admins) narrow the list. Newest first.
 */
async function listTasks(a: ActionArgs, done: boolean) {
  const q = query(a.request);
  const flavour = flavourOf(a.request);
  const filter: TaskFilter = { kinds: [a.kind], done };
  if (q.state) filter.states = parseStates(q.state);
  if (q.creator !== undefined) {
    const id = await a.request.server.core.auth.userIdByName(q.creator);
    filter.creatorId = id ?? -1;
  }
  const pageSize = q.per_page ?? q.limit;
  if (pageSize !== undefined || q.page !== undefined || q.cursor !== undefined) {
    const limit = intParam(pageSize ?? '100', 'per_page', 1, 1000);
    const page = intParam(q.page ?? '1', 'page', 1, 1_000_000);
    const afterSeq = q.cursor ? intParam(q.cursor, 'cursor', 0, Number.MAX_SAFE_INTEGER) : undefined;
    const tasks = await a.tasks.list(a.principal, filter, {
      limit,
      order: 'desc',
      ...(afterSeq !== undefined ? { afterSeq } : { offset: (page - 1) * limit }),
    });
    const last = tasks[tasks.length - 1];
    if (tasks.length === limit && last) a.reply.header('x-next-cursor', String(last.seq));
    return ok(tasks.map((t) => alistTask(t, flavour)));
  }
  const pages = a.tasks.iterate(a.principal, filter, 'desc');
  // Pull the first page before answering, so a refused caller gets an error envelope, not a broken stream.
  const first = await pages.next();
  async function* body() {
    yield '{"code":200,"message":"success","data":[';
    let sep = '';
    if (!first.done) {
      for (const t of first.value) {
        yield sep + JSON.stringify(alistTask(t, flavour));
        sep = ',';
      }
      for await (const page of pages) {
        yield page.map((t) => sep + JSON.stringify(alistTask(t, flavour))).join('');
        sep = ',';
      }
    }
    yield ']}';
  }
  return a.reply.type('application/json; charset=utf-8').send(Readable.from(body()));
}

/** Comma-separated states, by name (`failed`) or by tache's number (`7`), in either flavour. */
function parseStates(value: string): TaskState[] {
  return value.split(',').map((raw) => {
    const s = raw.trim();
    const state = /^\d$/.test(s) ? TASK_STATES[Number(s)] : TASK_STATES.find((name) => name === s);
    if (!state) throw new FerryError('E_BAD_REQUEST', `unknown state "${s}"`);
    return state;
  });
}

function intParam(value: string, name: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new FerryError('E_BAD_REQUEST', `${name} must be an integer ${min}..${max}`);
  return n;
}
