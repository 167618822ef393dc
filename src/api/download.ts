import type { FastifyInstance } from 'fastify';
import parseRange from 'range-parser';
import { FerryError } from '../errors.ts';
import { baseName } from '../storage/paths.ts';
import { errorEnvelope } from './alist/envelope.ts';
import { principalOf } from './context.ts';
import { toVirtual } from './fs.ts';

/**
 * `GET /d/<path>`: the file's bytes, with single `Range` requests answered as 206. Unlike the
 * JSON API, errors here use real HTTP statuses (download tools look at them) with the AList
 * envelope as the body.
 */
export async function downloadRoutes(app: FastifyInstance): Promise<void> {
  app.route({
    method: ['GET', 'HEAD'],
    url: '/d/*',
    handler: async (request, reply) => {
      try {
        const principal = await principalOf(request);
        const raw = (request.params as { '*': string })['*'];
        let decoded: string;
        try {
          decoded = decodeURIComponent(raw);
        } catch {
          throw new FerryError('E_BAD_REQUEST', 'path is not valid URL encoding');
        }
        const r = app.core.mounts.resolve(toVirtual(principal, decoded));
        const entry = await r.driver.stat(r.path);
        if (!entry) throw new FerryError('E_NOT_FOUND', 'object not found');
        if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'is a folder');
        reply.header('accept-ranges', 'bytes');
        reply.header('last-modified', new Date(entry.modified).toUTCString());
        reply.header(
          'content-disposition',
          `attachment; filename*=UTF-8''${encodeURIComponent(baseName(r.path))}`,
        );
        reply.type('application/octet-stream');
        let start = 0;
        let end = entry.size - 1;
        const range = request.headers.range;
        if (range && entry.size > 0) {
          const parsed = parseRange(entry.size, range, { combine: true });
          if (parsed === -1) {
            reply.header('content-range', `bytes */${entry.size}`);
            return reply.code(416).send();
          }
          if (Array.isArray(parsed) && parsed.type === 'bytes' && parsed.length === 1 && parsed[0]) {
            ({ start, end } = parsed[0]);
            reply.code(206).header('content-range', `bytes ${start}-${end}/${entry.size}`);
          }
        }
        reply.header('content-length', String(Math.max(0, end - start + 1)));
        if (request.method === 'HEAD' || entry.size === 0) return reply.send();
        const controller = new AbortController();
        request.raw.on('close', () => controller.abort());
        return reply.send(await r.driver.read(r.path, { start, end, signal: controller.signal }));
      } catch (err) {
        const envelope = errorEnvelope(err);
        return reply.code(envelope.code >= 400 && envelope.code < 600 ? envelope.code : 500).send(envelope);
      }
    },
  });
}
