import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { isGuest, type Principal } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import { isDone, type Task } from '../../tasks/model.ts';
import { principalOf } from '../context.ts';
import { RateLimiter } from '../rate-limit.ts';
import { efileCode, efileStatus, efileTask, efileTaskSchema } from './view.ts';

const PREFIX = '/efile/openapi/v2/file';
/** The seeds' limit for one list or cancel call (and, by ferry's choice, one submission). */
export const MAX_IDS = 500;

declare module 'fastify' {
  interface FastifyRequest {
    efileUser?: Principal;
  }
}

class EfileError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const envelope = (data: unknown) => ({ code: '0', msg: 'success', data });

const replySchema = (data: object) => ({
  200: {
    type: 'object',
    // data is null in error replies
    properties: {
      code: { type: 'string' },
      msg: { type: 'string' },
      data: { ...data, type: ['array', 'null'] },
    },
  },
});

const taskIdsBody = {
  type: 'object',
  required: ['taskIds'],
  properties: {
    taskIds: { type: 'array', minItems: 1, maxItems: MAX_IDS, items: { type: 'string', maxLength: 64 } },
  },
} as const;

const transferBody = {
  type: 'array',
  minItems: 1,
  maxItems: MAX_IDS,
  items: {
    type: 'object',
    required: ['sourcePath', 'targetPath'],
    properties: {
      sourcePath: { type: 'string', minLength: 1 },
      targetPath: { type: 'string', minLength: 1 },
      duplicateHandleType: { type: ['string', 'null'], enum: ['cover', 'both', null] },
    },
  },
} as const;

const removeBody = {
  type: 'array',
  minItems: 1,
  maxItems: MAX_IDS,
  items: {
    type: 'object',
    required: ['sourcePath'],
    properties: { sourcePath: { type: 'string', minLength: 1 } },
  },
} as const;

/**
 * The SCNet efile dialect: submit async copy/move/remove, list and cancel by id. Header
 * `token` carries the same token as AList's `Authorization`. Replies are `{code, msg, data}`
 * with string codes from the seeds' table; HTTP status is always 200.
 */
export async function efileRoutes(app: FastifyInstance): Promise<void> {
  const { tasks, requests, config } = app.core;
  const limiter = new RateLimiter(config.efile.ratePerSecond, config.efile.rateBurst);

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const { code, msg } = toEfileError(err, request);
    if (code === '10001') request.log.error({ err }, 'efile request failed');
    return reply.code(200).send({ code, msg, data: null });
  });

  app.addHook('preValidation', async (request) => {
    const principal = await principalOf(request, request.headers.token as string | undefined);
    if (isGuest(principal)) throw new FerryError('E_GUEST', 'guests may not use tasks');
    if (!limiter.take(String(principal.id)))
      throw new EfileError('911048', 'too many requests; try again later');
    request.efileUser = principal;
  });

  const submit = (kind: 'copy' | 'move') => async (request: FastifyRequest) => {
    const principal = user(request);
    const items = request.body as {
      sourcePath: string;
      targetPath: string;
      duplicateHandleType?: string | null;
    }[];
    const specs = await requests.transfers(
      principal,
      kind,
      items.map((item) => ({
        src: item.sourcePath,
        dstDir: item.targetPath,
        overwrite: item.duplicateHandleType === 'cover',
        keepBoth: item.duplicateHandleType === 'both',
      })),
      { overwrite: false, keepBoth: false, skipExisting: false, strict: true },
    );
    const created = await tasks.create(principal, specs);
    return envelope(created.map((t) => efileTask(t, principal)));
  };

  const listSchema = { type: 'array', items: efileTaskSchema };
  app.post(
    `${PREFIX}/async-copy`,
    { schema: { tags: ['efile'], body: transferBody, response: replySchema(listSchema) } },
    submit('copy'),
  );
  app.post(
    `${PREFIX}/async-move`,
    { schema: { tags: ['efile'], body: transferBody, response: replySchema(listSchema) } },
    submit('move'),
  );
  app.post(
    `${PREFIX}/async-remove`,
    { schema: { tags: ['efile'], body: removeBody, response: replySchema(listSchema) } },
    async (request) => {
      const principal = user(request);
      const items = request.body as { sourcePath: string }[];
      const specs = await requests.deletes(
        principal,
        items.map((item) => item.sourcePath),
        { mustExist: true },
      );
      const created = await tasks.create(principal, specs);
      return envelope(created.map((t) => efileTask(t, principal)));
    },
  );

  app.post(
    `${PREFIX}/task/list`,
    { schema: { tags: ['efile'], body: taskIdsBody, response: replySchema(listSchema) } },
    async (request) => {
      const principal = user(request);
      return envelope((await visible(request, principal)).map((t) => efileTask(t, principal)));
    },
  );

  const cancelResult = {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        taskId: { type: 'string' },
        result: { type: 'boolean' },
        status: { type: ['string', 'null'], enum: ['cancel', 'complete', 'fail', null] },
      },
    },
  };
  app.post(
    `${PREFIX}/task/cancel`,
    { schema: { tags: ['efile'], body: taskIdsBody, response: replySchema(cancelResult) } },
    async (request) => {
      const principal = user(request);
      const byId = new Map((await visible(request, principal)).map((t) => [t.id, t]));
      const ids = (request.body as { taskIds: string[] }).taskIds;
      const results = [];
      for (const id of ids) {
        const task = byId.get(id);
        // Unknown and other users' ids answer alike: nothing is revealed about them.
        if (!task) {
          results.push({ taskId: id, result: false, status: null });
        } else if (isDone(task.state)) {
          results.push({ taskId: id, result: false, status: efileStatus(task.state) });
        } else {
          try {
            await tasks.cancel(principal, id);
            results.push({ taskId: id, result: true, status: 'cancel' });
          } catch (err) {
            if (!(err instanceof FerryError)) throw err;
            const now = (await tasks.list(principal, { ids: [id] }, { limit: 1, order: 'asc' }))[0];
            results.push({ taskId: id, result: false, status: now ? efileStatus(now.state) : null });
          }
        }
      }
      return envelope(results);
    },
  );

  async function visible(request: FastifyRequest, principal: Principal): Promise<Task[]> {
    const ids = [...new Set((request.body as { taskIds: string[] }).taskIds)];
    const found = await tasks.list(principal, { ids }, { limit: ids.length, order: 'asc' });
    const order = new Map(ids.map((id, i) => [id, i]));
    return found.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
  }
}

/** The caller `preValidation` found; permissions are the file service's to check. */
function user(request: FastifyRequest): Principal {
  const principal = request.efileUser;
  if (!principal) throw new FerryError('E_UNAUTHORIZED', 'not signed in');
  return principal;
}

/** Map anything thrown to efile's string codes: missing parameters 10003, invalid ones 10004. */
function toEfileError(err: FastifyError, request: FastifyRequest): { code: string; msg: string } {
  if (err instanceof EfileError) return { code: err.code, msg: err.message };
  if (err instanceof FerryError) {
    return { code: efileCode(err.code), msg: err.code === 'E_INTERNAL' ? 'internal error' : err.message };
  }
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError)
    return { code: '10004', msg: 'request body is not valid JSON' };
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || request.body === undefined || request.body === null) {
    return { code: '10003', msg: 'request body is missing' };
  }
  if (err.validation) {
    const missing = err.validation.some(
      (v) => v.keyword === 'required' || (v.keyword === 'minItems' && v.params?.limit === 1),
    );
    return { code: missing ? '10003' : '10004', msg: err.message };
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500)
    return { code: '10004', msg: err.message };
  return { code: '10001', msg: 'internal error' };
}
