import type { FastifyInstance } from 'fastify';
import { TOOLS, type Tool } from '../../download/url-policy.ts';
import { FerryError } from '../../errors.ts';
import { DELETE_POLICIES, readDeletePolicy } from '../../tasks/definitions/offline-download.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { envelope, objectBody, PATH } from './schemas.ts';
import { alistTask } from './task-view.ts';

/** Most URLs one request takes. */
const MAX_URLS = 100;

/** The tool as AList's clients name it (any case); none is SimpleHttp. */
function readTool(value: unknown): Tool {
  if (value === undefined || value === null || value === '') return 'SimpleHttp';
  const tool = TOOLS.find((t) => typeof value === 'string' && t.toLowerCase() === value.toLowerCase());
  if (!tool)
    throw new FerryError(
      'E_BAD_REQUEST',
      `unknown offline download tool ${JSON.stringify(value)} (${TOOLS.join(', ')})`,
    );
  return tool;
}

/**
 * AList's offline download: `POST /api/fs/add_offline_download {urls, path, tool, delete_policy}`
 * makes one `offline_download` task per URL (downloading into ferry's data dir), each of which
 * queues an `offline_download_transfer` into `path` when done (with `upload_download_stream`,
 * SimpleHttp streams into `path` itself, no transfer). Every URL is checked before any task
 * exists (`TaskRequests.offlineDownloads`).
 */
export async function alistOfflineRoutes(app: FastifyInstance): Promise<void> {
  const { requests, tasks } = app.core;
  const tags = ['alist offline download'];

  app.get(
    '/api/public/offline_download_tools',
    { schema: { tags, response: envelope('the tool names') } },
    async () => ok([...TOOLS]),
  );

  app.post<{ Body: { urls: string[]; path?: string; tool?: string; delete_policy?: string } }>(
    '/api/fs/add_offline_download',
    {
      schema: {
        tags,
        body: objectBody(
          {
            urls: { type: 'array', minItems: 1, maxItems: MAX_URLS, items: { type: 'string' } },
            path: PATH,
            tool: { type: ['string', 'null'], description: TOOLS.join(' | ') },
            delete_policy: { type: ['string', 'null'], description: DELETE_POLICIES.join(' | ') },
          },
          ['urls'],
        ),
        response: envelope("`{tasks: [task]}`: the tasks created, in AList's task shape"),
      },
    },
    async (request) => {
      const principal = await principalOf(request);
      const b = request.body;
      const specs = await requests.offlineDownloads(principal, {
        urls: b.urls,
        dstDir: b.path ?? '/',
        tool: readTool(b.tool),
        deletePolicy: readDeletePolicy(b.delete_policy),
      });
      const created = await tasks.create(principal, specs);
      return ok({ tasks: created.map((t) => alistTask(t, flavourOf(request))) });
    },
  );
}
