import type { FastifyInstance } from 'fastify';
import { isAdmin, isGuest } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import { sendError } from './alist/envelope.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';

const HEARTBEAT_MS = 15_000;
const MAX_BUFFERED = 4 * 1024 * 1024;

/**
 * `GET /api/task/events`: a Server-Sent Events stream of the caller's task changes (an admin's:
 * everyone's). `event: task` carries the task in AList's shape; `event: removed` the ids of
 * deleted tasks. Optional `?type=copy` narrows to one kind. A comment line every 15 s keeps
 * proxies from closing the stream.
 */
export async function eventRoutes(app: FastifyInstance): Promise<void> {
  app.get('/api/task/events', async (request, reply) => {
    let principal: Awaited<ReturnType<typeof principalOf>>;
    try {
      principal = await principalOf(request);
      if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
    } catch (err) {
      return sendError(reply, err);
    }
    const type = (request.query as { type?: string }).type;
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
    const { events, config } = app.core;
    // This route is not one of the AList dialect's (no `/@openlist` twin): it speaks the root's flavour.
    const offChange = events.on((task) => {
      if (mine(task)) send(`event: task\ndata: ${JSON.stringify(alistTask(task, config.alistCompat))}\n\n`);
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
