import type { FastifyInstance } from 'fastify';
import { isAdmin, isGuest } from '../../auth/roles.ts';
import { TASK_KINDS } from '../../config.ts';
import { FerryError } from '../../errors.ts';
import { principalOf } from '../context.ts';
import { flavourOf } from './flavour.ts';
import { envelope } from './schemas.ts';
import { alistTask } from './task-view.ts';

const HEARTBEAT_MS = 15_000;
const MAX_BUFFERED = 4 * 1024 * 1024;

/**
 * `GET /api/task/events`: a Server-Sent Events stream of the caller's task changes (an admin's:
 * everyone's). `event: task` carries the task in AList's shape; `event: removed` the ids of
 * deleted tasks. Optional `?type=copy` narrows to one kind. A comment line every 15 s keeps
 * proxies from closing the stream. Served at the root and under `/@openlist` like the other AList
 * routes, each in its own flavour. A refused caller gets the envelope instead of a stream.
 */
export async function alistEventRoutes(app: FastifyInstance): Promise<void> {
  const schema = {
    tags: ['alist task'],
    summary: "Server-Sent Events of the caller's task changes",
    querystring: {
      type: 'object',
      properties: { type: { type: 'string', enum: [...TASK_KINDS], description: 'only tasks of this kind' } },
    },
    // The stream itself is text/event-stream (`event: task` with a task, `event: removed` with ids).
    response: envelope('only a refused caller gets JSON: the error in the envelope'),
  };
  app.get<{ Querystring: { type?: string } }>('/api/task/events', { schema }, async (request, reply) => {
    const principal = await principalOf(request);
    if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
    const flavour = flavourOf(request);
    const type = request.query.type;
    const mine = (t: { creatorId: number; kind: string }) =>
      (isAdmin(principal) || t.creatorId === principal.id) && (!type || t.kind === type);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // A client that stops reading must not make the server buffer without end: drop it.
    const send = (text: string) => {
      if (res.writableLength > MAX_BUFFERED) res.destroy();
      else res.write(text);
    };
    send(': connected\n\n');
    const { events } = app.core;
    const offChange = events.on((task) => {
      if (mine(task)) send(`event: task\ndata: ${JSON.stringify(alistTask(task, flavour))}\n\n`);
    });
    const offRemoved = events.onRemoved((tasks) => {
      const ids = tasks.filter(mine).map((t) => t.id);
      if (ids.length > 0) send(`event: removed\ndata: ${JSON.stringify(ids)}\n\n`);
    });
    const heartbeat = setInterval(() => send(': ping\n\n'), HEARTBEAT_MS);
    request.raw.on('close', () => {
      clearInterval(heartbeat);
      offChange();
      offRemoved();
    });
  });
}
