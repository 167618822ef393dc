import type { FastifyInstance } from 'fastify';
import { FerryError } from '../../errors.ts';
import { checkName, joinPath } from '../../storage/paths.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { envelope, NAME, names, objectBody, PATH } from './schemas.ts';
import { alistTask } from './task-view.ts';

/** Most names one copy/move/remove request takes. */
const MAX_NAMES = 1000;
/** How long `fs/remove` waits for its delete tasks before answering with the tasks instead. */
const REMOVE_WAIT_MS = 10_000;

const tasksReply = envelope("`{tasks: [task]}`: the tasks created, in AList's task shape");

/**
 * AList's file changes: mkdir and rename answer directly; copy, move and remove become tasks.
 * Every path is the caller's (below its base path); the checks are the file service's.
 */
export async function alistFsRoutes(app: FastifyInstance): Promise<void> {
  const { files, requests, tasks } = app.core;
  const tags = ['alist fs'];

  app.post<{ Body: { path: string } }>(
    '/api/fs/mkdir',
    { schema: { tags, body: objectBody({ path: PATH }, ['path']), response: envelope('data: null') } },
    async (request) => {
      await files.mkdir(await principalOf(request), request.body.path);
      return ok(null);
    },
  );

  app.post<{ Body: { path: string; name: string } }>(
    '/api/fs/rename',
    {
      schema: {
        tags,
        body: objectBody({ path: PATH, name: NAME }, ['path', 'name']),
        response: envelope('data: null'),
      },
    },
    async (request) => {
      await files.rename(await principalOf(request), request.body.path, request.body.name);
      return ok(null);
    },
  );

  app.post<{ Body: { dir: string; names: string[] } }>(
    '/api/fs/remove',
    {
      schema: {
        tags,
        summary:
          'Delete names in a folder (as tasks); answers once they finish, or after 10 s with the tasks',
        body: objectBody({ dir: PATH, names: names(MAX_NAMES) }, ['dir', 'names']),
        response: tasksReply,
      },
    },
    async (request) => {
      const principal = await principalOf(request);
      const specs = await requests.deletes(
        principal,
        request.body.names.map((name) => joinPath(request.body.dir, checkName(name))),
      );
      const created = await tasks.create(principal, specs);
      const finished = await tasks.waitFinished(
        created.map((t) => t.id),
        REMOVE_WAIT_MS,
      );
      const failed = finished.find((t) => t.state === 'failed');
      if (failed) throw new FerryError('E_BAD_REQUEST', failed.error || 'delete failed');
      return ok({ tasks: finished.map((t) => alistTask(t, flavourOf(request))) });
    },
  );

  const transferBody = objectBody(
    {
      src_dir: PATH,
      dst_dir: PATH,
      names: names(MAX_NAMES),
      overwrite: { type: 'boolean' },
      skip_existing: { type: 'boolean', description: 'skip a file of the same name and size' },
    },
    ['src_dir', 'dst_dir', 'names'],
  );
  for (const kind of ['copy', 'move'] as const) {
    app.post<{
      Body: {
        src_dir: string;
        dst_dir: string;
        names: string[];
        overwrite?: boolean;
        skip_existing?: boolean;
      };
    }>(
      `/api/fs/${kind}`,
      {
        schema: {
          tags,
          summary: `${kind} names from src_dir into dst_dir, one task each`,
          body: transferBody,
          response: tasksReply,
        },
      },
      async (request) => {
        const principal = await principalOf(request);
        const b = request.body;
        const specs = await requests.transfers(
          principal,
          kind,
          b.names.map((name) => ({ src: joinPath(b.src_dir, checkName(name)), dstDir: b.dst_dir })),
          {
            overwrite: b.overwrite === true,
            skipExisting: b.skip_existing === true,
            keepBoth: false,
            dstMustBeFolder: true,
          },
        );
        const created = await tasks.create(principal, specs);
        return ok({ tasks: created.map((t) => alistTask(t, flavourOf(request))) });
      },
    );
  }
}
