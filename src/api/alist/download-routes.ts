import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import parseRange from 'range-parser';
import { FerryError } from '../../errors.ts';
import type { Download } from '../../files/file-service.ts';
import { principalOf } from '../context.ts';
import { inlineType, isScriptable } from './inline-type.ts';
import { envelope } from './schemas.ts';

/**
 * The file a download request names, through the file service:
 * - with `?sign=`: the path is absolute (the web UI builds `/d/<base path><path>?sign=…`) and the
 *   sign must be this server's for exactly that path; no token is needed (nor looked at);
 * - without: the caller's token (or the guest) decides, and the path is below its base path.
 * Fastify has already percent-decoded the path once; it is not decoded again, so `%25` stays a
 * literal `%` and `..%252f` cannot become a `..` segment.
 */
async function downloadOf(request: FastifyRequest): Promise<Download> {
  const path = (request.params as { '*': string })['*'];
  const query = request.query as { sign?: unknown; inner?: unknown };
  // The web UI's archive preview asks for one entry of an archive (`?inner=`): ferry cannot
  // serve one, and sending the whole archive under that entry's name would be wrong.
  if (query.inner !== undefined)
    throw new FerryError(
      'E_BAD_REQUEST',
      'ferry does not download single entries of an archive; extract it with fs/archive/decompress',
    );
  const { files } = request.server.core;
  if (query.sign === undefined || query.sign === '')
    return files.download(path, { principal: await principalOf(request) });
  // A sign given twice is no sign of this server's.
  if (typeof query.sign !== 'string') throw new FerryError('E_UNAUTHORIZED', 'sign invalid');
  return files.download(path, { sign: query.sign });
}

/**
 * Answer a download: the file's bytes, a single `Range` as 206, an unsatisfiable one as 416.
 * `inline` serves it for showing (`/p`): a content type from its extension, no attachment.
 */
async function serveFile(
  request: FastifyRequest,
  reply: FastifyReply,
  file: Download,
  inline: boolean,
): Promise<FastifyReply> {
  const { entry, name } = file;
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
  return reply.send(await file.read({ start, end, signal: controller.signal }));
}

/**
 * `GET|HEAD /d/<path>` (download: `attachment`) and `/p/<path>` (AList's proxy route, which the
 * web UI's previews use: the same bytes, shown inline). ferry always sends the bytes itself, so
 * the two differ only in how the browser is told to treat them. A file's link works without a
 * token when it carries its `sign` (see `downloadOf`). Unlike the JSON API, errors here use
 * real HTTP statuses (download tools look at them) with the AList envelope as the body.
 */
export async function alistDownloadRoutes(app: FastifyInstance): Promise<void> {
  const envelopeBody = envelope('')[200];
  for (const [prefix, inline] of [
    ['/d', false],
    ['/p', true],
  ] as const) {
    app.route({
      method: ['GET', 'HEAD'],
      url: `${prefix}/*`,
      config: { httpStatus: true },
      schema: {
        tags: ['alist fs'],
        summary: inline ? 'A file, shown inline (previews)' : 'A file, as an attachment',
        params: { type: 'object', properties: { '*': { type: 'string', description: "the file's path" } } },
        querystring: {
          type: 'object',
          properties: {
            sign: { description: 'the sign from fs/get or fs/list: no token needed with it' },
            inner: { description: 'an archive entry: refused, ferry serves whole files' },
          },
        },
        response: {
          '2xx': { description: 'the bytes (206 for a Range)', type: 'string', format: 'binary' },
          '4xx': { ...envelopeBody, description: 'the AList envelope, with the HTTP status of the error' },
          '5xx': { ...envelopeBody, description: 'the AList envelope, with the HTTP status of the error' },
        },
      },
      handler: async (request, reply) => serveFile(request, reply, await downloadOf(request), inline),
    });
  }
}
