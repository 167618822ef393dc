import type { Readable } from 'node:stream';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { nanoid } from 'nanoid';
import { isGuest, type Principal } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import { dropSpooled, spoolUpload } from '../../files/upload-spool.ts';
import type { TaskSpec } from '../../tasks/service.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { envelope } from './schemas.ts';
import { alistTask } from './task-view.ts';

/** How long an upload without `As-Task: true` waits for its task before answering anyway. */
const SYNC_UPLOAD_WAIT_MS = 10 * 60_000;

/**
 * The most of an unread body drained after an early reply (see `settleUnreadBody`) so that the
 * connection can carry the client's next request. A longer body closes the connection instead:
 * reading megabytes only to throw them away costs more than a new connection. (Go's net/http, and
 * so AList, drains 256 KiB.)
 */
const DRAIN_BYTES = 4 << 20;
/** How long that draining may take before the connection is closed anyway (a stalled client). */
const DRAIN_MS = 5_000;

/**
 * `PUT /api/fs/put` (raw body) and `PUT /api/fs/form` (multipart field `file`). The body is
 * written to the spool in the data directory and fsynced, then the upload task is stored, and
 * only then does the client get its answer: an accepted upload survives a crash. With
 * `As-Task: true` the reply carries the task; without it the reply waits for the task to finish.
 */
export async function alistUploadRoutes(app: FastifyInstance): Promise<void> {
  // Raw bodies are streamed to disk, never parsed or buffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  await app.register(multipart, { limits: { files: 1, fileSize: Number.MAX_SAFE_INTEGER } });
  // Every reply of these routes, whatever sent it: an error may come before the body was read.
  app.addHook('onSend', async (request, reply, payload) => {
    settleUnreadBody(request, reply);
    return payload;
  });
  const schema = (summary: string) => ({
    tags: ['alist fs'],
    summary,
    headers: UPLOAD_HEADERS,
    response: envelope('without As-Task: null once written; with it `{task}`'),
  });

  app.put('/api/fs/put', { schema: schema('Upload the raw request body to File-Path') }, async (request) => {
    const target = await uploadTarget(request);
    const expected =
      request.headers['content-length'] === undefined ? undefined : Number(request.headers['content-length']);
    return ok(await accept(app, request, target, request.raw, expected));
  });

  app.put(
    '/api/fs/form',
    { schema: schema('Upload the multipart field `file` to File-Path') },
    async (request) => {
      const target = await uploadTarget(request);
      if (!request.isMultipart())
        throw new FerryError('E_BAD_REQUEST', 'expected a multipart/form-data body');
      const file = await request.file();
      if (file?.fieldname !== 'file')
        throw new FerryError('E_BAD_REQUEST', 'multipart field "file" is missing');
      const result = await accept(app, request, target, file.file, undefined);
      if (file.file.truncated) throw new FerryError('E_BAD_REQUEST', 'upload too large');
      return ok(result);
    },
  );
}

/** The headers AList's uploads take (all checked by the handler, for AList's own messages). */
const UPLOAD_HEADERS = {
  type: 'object',
  properties: {
    'file-path': { type: 'string', description: "URL-encoded path of the file (the caller's)" },
    'as-task': { type: 'string', description: '"true": answer at once with the task' },
    overwrite: { type: 'string', description: '"false": refuse an existing file (default: replace it)' },
    'last-modified': { type: 'string', description: "the file's modification time, ms since the epoch" },
  },
} as const;

/**
 * Called as a reply goes out: when the request's body was not read to its end (the upload was
 * refused before: token, permission, path, an existing file...), make sure the connection does not
 * hang. Left alone, the unread body would stay in the socket: the multipart parser pauses the
 * request and nothing resumes it, so the client's next request on that keep-alive connection would
 * wait forever. A body of at most `DRAIN_BYTES` is read and dropped (within `DRAIN_MS`) and the
 * connection lives on; a longer one gets `Connection: close` and the connection ends after the
 * reply.
 */
function settleUnreadBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete || raw.readableEnded || raw.destroyed) return;
  raw.unpipe(); // from the multipart parser, which would not read on
  // Destroying a request that has not ended destroys its socket.
  const closeAfterReply = () => {
    if (reply.raw.writableFinished) raw.destroy();
    else reply.raw.once('finish', () => raw.destroy());
  };
  const declared = Number(request.headers['content-length']);
  if (declared > DRAIN_BYTES) {
    reply.header('connection', 'close'); // Node ends the socket once the reply is written
    raw.resume(); // meanwhile, read on, so that a client still sending can read the reply
    return;
  }
  let drained = 0;
  const timer = setTimeout(closeAfterReply, DRAIN_MS).unref();
  raw.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_BYTES) {
      // More than the header said, or no length given: stop here.
      clearTimeout(timer);
      raw.pause();
      closeAfterReply();
    }
  });
  raw.once('end', () => clearTimeout(timer));
  raw.once('close', () => clearTimeout(timer));
  raw.resume();
}

interface UploadTarget {
  principal: Principal;
  asTask: boolean;
  /** The checked destination, and how to describe its task once the body is spooled. */
  checked: { path: string; spec(id: string, size: number): TaskSpec };
}

/**
 * The latest `Last-Modified` taken (ms): SFTP keeps times as 32-bit seconds, so 2106 is as far as
 * every driver that sets times can go.
 */
const LATEST_MODIFIED = 0xffffffff * 1000;

/**
 * AList's `Last-Modified` upload header: the file's modification time in ms since the epoch, as
 * its clients send it (a number, not an HTTP date). Anything else, or a time past
 * `LATEST_MODIFIED`, is ignored, as AList ignores what it cannot parse: the file then gets the time
 * it is written.
 */
function lastModifiedOf(request: FastifyRequest): number | undefined {
  const header = request.headers['last-modified'];
  const text = typeof header === 'string' ? header.trim() : '';
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
  return ms <= LATEST_MODIFIED ? ms : undefined;
}

async function uploadTarget(request: FastifyRequest): Promise<UploadTarget> {
  const principal = await principalOf(request);
  if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
  const header = request.headers['file-path'];
  if (typeof header !== 'string' || header === '')
    throw new FerryError('E_BAD_REQUEST', 'File-Path header is required');
  let decoded: string;
  try {
    decoded = decodeURIComponent(header);
  } catch {
    throw new FerryError('E_BAD_REQUEST', 'File-Path is not valid URL encoding');
  }
  const checked = await request.server.core.requests.upload(principal, decoded, {
    // AList overwrites unless told `Overwrite: false`.
    overwrite: String(request.headers.overwrite ?? 'true').toLowerCase() !== 'false',
    modified: lastModifiedOf(request),
  });
  return { principal, asTask: String(request.headers['as-task']).toLowerCase() === 'true', checked };
}

async function accept(
  app: FastifyInstance,
  request: FastifyRequest,
  target: UploadTarget,
  source: Readable,
  expected: number | undefined,
) {
  const { tasks, config } = app.core;
  const id = nanoid();
  let size: number;
  try {
    size = await spoolUpload(config.stagingDir, id, source);
  } catch (err) {
    request.log.warn({ err }, 'upload body ended early');
    throw err;
  }
  try {
    if (expected !== undefined && Number.isFinite(expected) && size !== expected) {
      throw new FerryError('E_BAD_REQUEST', `upload incomplete: got ${size} of ${expected} bytes`);
    }
    const [task] = await tasks.create(target.principal, [target.checked.spec(id, size)]);
    if (!task) throw new FerryError('E_INTERNAL', 'task was not created');
    if (target.asTask) return { task: alistTask(task, flavourOf(request)) };
    const [finished] = await tasks.waitFinished([task.id], SYNC_UPLOAD_WAIT_MS);
    if (finished?.state === 'failed')
      throw new FerryError('E_BAD_REQUEST', finished.error || 'upload failed');
    return null;
  } catch (err) {
    if (!(await tasks.exists(id))) await dropSpooled(config.stagingDir, id);
    throw err;
  }
}
