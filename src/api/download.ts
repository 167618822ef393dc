import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import parseRange from 'range-parser';
import { FerryError } from '../errors.ts';
import { toVirtual } from '../files/user-path.ts';
import type { Resolved } from '../storage/mounts.ts';
import { baseName, normalizePath } from '../storage/paths.ts';
import { errorEnvelope } from './alist/envelope.ts';
import { inlineType, isScriptable } from './alist/inline-type.ts';
import { principalOf } from './context.ts';

/**
 * The virtual path a download request names, and whether the caller may read it.
 * - With `?sign=`: the path is absolute (the web UI builds `/d/<base path><path>?sign=…`) and the
 *   sign must be this server's for exactly that path; no token is needed (nor looked at). A
 *   wrong, expired or other path's sign is `E_UNAUTHORIZED`.
 * - Without: the caller's token (or the guest) decides, and the path is below its base path.
 * Fastify has already percent-decoded the path once; it is not decoded again, so `%25` stays a
 * literal `%` and `..%252f` cannot become a `..` segment.
 */
async function downloadPath(request: FastifyRequest): Promise<string> {
  const path = (request.params as { '*': string })['*'];
  const query = request.query as Record<string, unknown>;
  // The web UI's archive preview asks for one entry of an archive (`?inner=`): ferry cannot
  // serve one, and sending the whole archive under that entry's name would be wrong.
  if (query.inner !== undefined)
    throw new FerryError(
      'E_BAD_REQUEST',
      'ferry does not download single entries of an archive; extract it with fs/archive/decompress',
    );
  const sign = query.sign;
  if (sign === undefined || sign === '') return toVirtual(await principalOf(request), path);
  if (typeof sign !== 'string') throw new FerryError('E_UNAUTHORIZED', 'sign invalid');
  const virtual = normalizePath(`/${path}`);
  request.server.core.links.verify(virtual, sign);
  return virtual;
}

/**
 * Answer a download: the file's bytes, a single `Range` as 206, an unsatisfiable one as 416.
 * `inline` serves it for showing (`/p`): a content type from its extension, no attachment.
 */
async function serveFile(
  request: FastifyRequest,
  reply: FastifyReply,
  r: Resolved,
  inline: boolean,
): Promise<FastifyReply> {
  const entry = await r.driver.stat(r.path);
  if (!entry) throw new FerryError('E_NOT_FOUND', 'object not found');
  if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'is a folder');
  const name = baseName(r.path);
  reply.header('accept-ranges', 'bytes');
  reply.header('last-modified', new Date(entry.modified).toUTCString());
  reply.header('x-content-type-options', 'nosniff');
  if (inline) {
    const type = inlineType(name);
    reply.type(type);
    reply.header('content-disposition', `inline; filename*=UTF-8''${encodeURIComponent(name)}`);
    if (isScriptable(type)) reply.header('content-security-policy', 'sandbox');
  } else {
    reply.type('application/octet-stream');
    reply.header('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(name)}`);
  }
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
}

/**
 * `GET|HEAD /d/<path>` (download: `attachment`) and `/p/<path>` (AList's proxy route, which the
 * web UI's previews use: the same bytes, shown inline). ferry always sends the bytes itself, so
 * the two differ only in how the browser is told to treat them. A file's link works without a
 * token when it carries its `sign` (see `downloadPath`). Unlike the JSON API, errors here use
 * real HTTP statuses (download tools look at them) with the AList envelope as the body.
 */
export async function downloadRoutes(app: FastifyInstance): Promise<void> {
  for (const [prefix, inline] of [
    ['/d', false],
    ['/p', true],
  ] as const) {
    app.route({
      method: ['GET', 'HEAD'],
      url: `${prefix}/*`,
      handler: async (request, reply) => {
        try {
          const path = await downloadPath(request);
          return await serveFile(request, reply, app.core.mounts.resolve(path), inline);
        } catch (err) {
          const envelope = errorEnvelope(err);
          // Headers set for the file before a late failure (a read that could not start).
          for (const header of ['content-disposition', 'content-length', 'content-range', 'content-type'])
            reply.removeHeader(header);
          return reply.code(envelope.code >= 400 && envelope.code < 600 ? envelope.code : 500).send(envelope);
        }
      },
    });
  }
}
