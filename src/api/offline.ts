import type { FastifyInstance } from 'fastify';
import { can, isGuest } from '../auth/roles.ts';
import { nameFromUrl } from '../download/file-name.ts';
import { parseDownloadUrl, TOOLS, type Tool } from '../download/url-policy.ts';
import { FerryError } from '../errors.ts';
import { readDeletePolicy } from '../tasks/definitions/offline-download.ts';
import type { CreateTask } from '../tasks/service.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';
import { toVirtual } from './fs.ts';

/** Most URLs one request takes. */
const MAX_URLS = 100;

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
 * SimpleHttp streams into `path` itself, no transfer). Every URL is checked before any
 * task exists: scheme, the tool's protocols, and hosts denied by name or literal address.
 */
export async function offlineRoutes(app: FastifyInstance): Promise<void> {
  const { mounts, tasks, offline } = app.core;

  app.get('/api/public/offline_download_tools', async () => ok([...TOOLS]));

  app.post('/api/fs/add_offline_download', async (request, reply) => {
    try {
      const principal = await principalOf(request);
      // Before the permission check: a guest hears that it is a guest, as on every task route.
      if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
      if (!can(principal, 'OFFLINE_DOWNLOAD'))
        throw new FerryError('E_FORBIDDEN', 'permission denied: offline download');
      const b = request.body;
      if (typeof b !== 'object' || b === null || Array.isArray(b))
        throw new FerryError('E_BAD_REQUEST', 'body must be a JSON object');
      const { urls, path, tool: rawTool, delete_policy } = b as Record<string, unknown>;
      if (!Array.isArray(urls) || urls.length === 0)
        throw new FerryError('E_BAD_REQUEST', 'urls must be a non-empty array');
      if (urls.length > MAX_URLS) throw new FerryError('E_BAD_REQUEST', `at most ${MAX_URLS} urls at once`);
      const tool = readTool(rawTool);
      const deletePolicy = readDeletePolicy(delete_policy);
      // Only SimpleHttp can hand the body to the destination as it arrives; aria2 writes files of
      // its own into the data dir, so a stream is refused before any task exists.
      if (deletePolicy === 'upload_download_stream' && tool !== 'SimpleHttp')
        throw new FerryError(
          'E_BAD_REQUEST',
          `delete_policy upload_download_stream works with the SimpleHttp tool only; ${tool} downloads into ferry's data directory first, so choose another delete_policy for it`,
        );
      const dstDir = toVirtual(principal, path ?? '/');
      const dst = mounts.resolve(dstDir);
      const entry = await dst.driver.stat(dst.path);
      if (entry && !entry.isDir) throw new FerryError('E_NOT_A_DIRECTORY', 'path is not a folder');
      const specs: CreateTask[] = urls.map((raw) => {
        const url = parseDownloadUrl(raw, tool);
        if (url.protocol !== 'magnet:') offline.policy.checkName(url.hostname);
        return {
          kind: 'offline_download',
          name: `download ${nameFromUrl(url)} to (${dstDir})`,
          payload: { url: url.href, dstDir, tool, deletePolicy },
        };
      });
      const created = await tasks.create(principal, specs);
      return ok({ tasks: created.map((t) => alistTask(t, flavourOf(request))) });
    } catch (err) {
      return sendError(reply, err);
    }
  });
}
