import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { isGuest, type Principal } from '../../auth/roles.ts';
import type { TaskKind } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import type { Task, TaskState } from '../../tasks/model.ts';
import { principalOf } from '../context.ts';

const PREFIX = '/koodrive/ose/v1/task';
export const MAX_PAGE_SIZE = 100;

/**
 * KooDrive's task types over ferry's kinds. The seed defines only 0 (transfer); ferry adds
 * 1 download, 2 decompress and 3 delete for its other kinds; a job's sync run is a transfer.
 */
export const TASK_TYPES: Record<number, readonly TaskKind[]> = {
  0: ['copy', 'move', 'upload', 'offline_download_transfer', 'decompress_upload', 'sync'],
  1: ['offline_download'],
  2: ['decompress'],
  3: ['delete'],
};

/** KooDrive's four statuses; a canceled task is FAILED (3) with `resultCode` "CANCELED". */
export const STATUS_STATES: Record<number, readonly TaskState[]> = {
  0: ['pending', 'waiting_retry', 'before_retry'],
  1: ['running', 'canceling', 'errored', 'failing'],
  2: ['succeeded'],
  3: ['failed', 'canceled'],
};

function typeOf(kind: TaskKind): number {
  for (const [type, kinds] of Object.entries(TASK_TYPES)) if (kinds.includes(kind)) return Number(type);
  return 0;
}

function statusOf(state: TaskState): number {
  for (const [status, states] of Object.entries(STATUS_STATES))
    if (states.includes(state)) return Number(status);
  return 1;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The opaque cursor after `task`: its place in the stable order (inserting transaction, then
 * seq), `<xid>_<seq>`; just `<seq>` where the store has no transaction ids (SQLite).
 */
function cursorOf(task: Task): string {
  return task.insertXid > 0 ? `${task.insertXid}_${task.seq}` : String(task.seq);
}

function parseCursor(cursor: string | undefined): { xid: number; seq: number } | undefined {
  if (!cursor) return undefined;
  const [a, b] = cursor.split('_');
  return b === undefined ? { xid: 0, seq: Number(a) } : { xid: Number(a), seq: Number(b) };
}

/** A task in KooDrive's `TaskInfo` shape. */
export function kooTask(task: Task) {
  const resultCode =
    task.state === 'succeeded'
      ? '0'
      : task.state === 'canceled'
        ? 'CANCELED'
        : task.state === 'failed'
          ? task.errorCode || 'FAILED'
          : '';
  return {
    taskId: task.id,
    taskName: task.name,
    taskType: typeOf(task.kind),
    tenantId: 'default',
    userId: String(task.creatorId),
    status: statusOf(task.state),
    initParams: JSON.stringify({ kind: task.kind, ...task.payload }),
    locale: 'en-US',
    resultCode,
    createTime: iso(task.createdAt),
    startTime: iso(task.startTime),
    endTime: iso(task.endTime),
  };
}

const taskInfoSchema = {
  type: 'object',
  properties: {
    taskId: { type: 'string' },
    taskName: { type: 'string' },
    taskType: {
      type: 'integer',
      description: '0 transfer (copy, move, upload, transfers), 1 download, 2 decompress, 3 delete',
    },
    tenantId: { type: 'string' },
    userId: { type: 'string' },
    status: {
      type: 'integer',
      description: '0 NEW, 1 EXECUTING, 2 SUCCESS, 3 FAILED (canceled: 3 with resultCode CANCELED)',
    },
    initParams: { type: 'string' },
    locale: { type: 'string' },
    resultCode: { type: 'string' },
    createTime: { type: ['string', 'null'] },
    startTime: { type: ['string', 'null'] },
    endTime: { type: ['string', 'null'] },
  },
} as const;

/**
 * KooDrive's task list and task detail. Pages are keyset pages in creation order (oldest
 * first), so tasks added while a client pages through appear on later pages and none is seen
 * twice. The reply carries the list under both `taskList` (the seed's table) and `taskListDtos`
 * (its example), and `code` as the string "0" (the table's type).
 */
export async function koodriveRoutes(app: FastifyInstance): Promise<void> {
  const { tasks } = app.core;

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof FerryError) {
      const status = Math.min(500, err.httpStatus);
      return reply
        .code(status)
        .send({ code: String(status), msg: status === 500 ? 'internal error' : err.message });
    }
    if (err.validation || (err.statusCode && err.statusCode < 500)) {
      return reply.code(400).send({ code: '400', msg: err.message });
    }
    request.log.error({ err }, 'koodrive request failed');
    return reply.code(500).send({ code: '500', msg: 'internal error' });
  });

  const caller = async (request: FastifyRequest): Promise<Principal> => {
    const principal = await principalOf(request);
    if (isGuest(principal)) throw new FerryError('E_GUEST', 'guests may not use tasks');
    return principal;
  };

  app.get(
    `${PREFIX}/list`,
    {
      schema: {
        tags: ['koodrive'],
        querystring: {
          type: 'object',
          properties: {
            taskType: { type: 'integer', enum: Object.keys(TASK_TYPES).map(Number) },
            status: { type: 'array', items: { type: 'integer', enum: [0, 1, 2, 3] } },
            pageSize: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: MAX_PAGE_SIZE },
            pageCursor: { type: 'string', pattern: '^([0-9]{1,20}(_[0-9]{1,20})?)?$' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              code: { type: 'string' },
              msg: { type: 'string' },
              taskList: { type: 'array', items: taskInfoSchema },
              taskListDtos: { type: 'array', items: taskInfoSchema },
              nextCursor: { type: 'string', description: 'absent on the last page' },
            },
          },
        },
      },
    },
    async (request) => {
      const principal = await caller(request);
      const q = request.query as {
        taskType?: number;
        status?: number[];
        pageSize: number;
        pageCursor?: string;
      };
      const states = q.status?.length ? q.status.flatMap((s) => STATUS_STATES[s] ?? []) : undefined;
      const after = parseCursor(q.pageCursor);
      const { tasks: page, more } = await tasks.listStable(
        principal,
        {
          ...(q.taskType !== undefined && { kinds: TASK_TYPES[q.taskType] ?? [] }),
          ...(states && { states }),
        },
        { limit: q.pageSize, ...(after && { after }) },
      );
      const list = page.map(kooTask);
      const last = page[page.length - 1];
      // More to come (a full page, or tasks whose insert is still settling): the cursor goes on
      // from the last task shown, or stays where it was when none could be shown yet.
      const next = last ? cursorOf(last) : q.pageCursor;
      return {
        code: '0',
        msg: 'Success.',
        taskList: list,
        taskListDtos: list,
        ...(more && next && { nextCursor: next }),
      };
    },
  );

  app.get(
    `${PREFIX}/:taskId`,
    {
      schema: {
        tags: ['koodrive'],
        params: { type: 'object', properties: { taskId: { type: 'string', maxLength: 64 } } },
        response: {
          200: {
            type: 'object',
            properties: {
              code: { type: 'string' },
              msg: { type: 'string' },
              task: taskInfoSchema,
              ...taskInfoSchema.properties,
            },
          },
        },
      },
    },
    async (request) => {
      const principal = await caller(request);
      const task = await tasks.get(principal, (request.params as { taskId: string }).taskId);
      const view = kooTask(task);
      // The fields at the top level (like the list's items) and under `task`.
      return { code: '0', msg: 'Success.', task: view, ...view };
    },
  );
}
