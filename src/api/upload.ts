import { createWriteStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { nanoid } from 'nanoid';
import { can, isGuest, type Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import { baseName, parentPath } from '../storage/paths.ts';
import { spoolPath } from '../tasks/kinds/upload.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';
import { toVirtual } from './fs.ts';
import { bracketed } from './task-specs.ts';

/** How long an upload without `As-Task: true` waits for its task before answering anyway. */
const SYNC_UPLOAD_WAIT_MS = 10 * 60_000;

/**
 * `PUT /api/fs/put` (raw body) and `PUT /api/fs/form` (multipart field `file`). The body is
 * written to the spool in the data directory and fsynced, then the upload task is stored, and
 * only then does the client get its answer: an accepted upload survives a crash. With
 * `As-Task: true` the reply carries the task; without it the reply waits for the task to finish.
 */
export async function spoolUploads(app: FastifyInstance): Promise<void> {
  // Raw bodies are streamed to disk, never parsed or buffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  await app.register(multipart, { limits: { files: 1, fileSize: Number.MAX_SAFE_INTEGER } });

  app.put('/api/fs/put', async (request, reply) => {
    try {
      const target = await uploadTarget(request);
      const expected =
        request.headers['content-length'] === undefined
          ? undefined
          : Number(request.headers['content-length']);
      return ok(await accept(app, request, target, request.raw, expected));
    } catch (err) {
      request.raw.resume(); // drain what is left so the connection can answer
      return sendError(reply, err);
    }
  });

  app.put('/api/fs/form', async (request, reply) => {
    try {
      const target = await uploadTarget(request);
      if (!request.isMultipart())
        throw new FerryError('E_BAD_REQUEST', 'expected a multipart/form-data body');
      const file = await request.file();
      if (file?.fieldname !== 'file')
        throw new FerryError('E_BAD_REQUEST', 'multipart field "file" is missing');
      const result = await accept(app, request, target, file.file, undefined);
      if (file.file.truncated) throw new FerryError('E_BAD_REQUEST', 'upload too large');
      return ok(result);
    } catch (err) {
      request.raw.resume();
      return sendError(reply, err);
    }
  });
}

interface UploadTarget {
  principal: Principal;
  path: string;
  asTask: boolean;
  overwrite: boolean;
}

async function uploadTarget(request: FastifyRequest): Promise<UploadTarget> {
  const principal = await principalOf(request);
  if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
  if (!can(principal, 'WRITE')) throw new FerryError('E_FORBIDDEN', 'permission denied: write');
  const header = request.headers['file-path'];
  if (typeof header !== 'string' || header === '')
    throw new FerryError('E_BAD_REQUEST', 'File-Path header is required');
  let decoded: string;
  try {
    decoded = decodeURIComponent(header);
  } catch {
    throw new FerryError('E_BAD_REQUEST', 'File-Path is not valid URL encoding');
  }
  const path = toVirtual(principal, decoded);
  if (baseName(path) === '') throw new FerryError('E_BAD_REQUEST', 'File-Path must name a file');
  return {
    principal,
    path,
    asTask: String(request.headers['as-task']).toLowerCase() === 'true',
    // AList overwrites unless told `Overwrite: false`.
    overwrite: String(request.headers.overwrite ?? 'true').toLowerCase() !== 'false',
  };
}

async function accept(
  app: FastifyInstance,
  request: FastifyRequest,
  target: UploadTarget,
  source: Readable,
  expected: number | undefined,
) {
  const { mounts, tasks, config } = app.core;
  const dst = mounts.resolve(target.path); // refuse before reading a byte when nothing is mounted there
  // stat() also checks the destination stays inside its storage: refuse before reading a byte.
  const existing = await dst.driver.stat(dst.path);
  if (existing?.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'a folder has that name');
  if (existing && !target.overwrite) throw new FerryError('E_EXISTS', 'file exists');
  const id = nanoid();
  const spool = spoolPath(config.dataDir, id);
  const size = await spoolTo(spool, source, request);
  try {
    if (expected !== undefined && Number.isFinite(expected) && size !== expected) {
      throw new FerryError('E_BAD_REQUEST', `upload incomplete: got ${size} of ${expected} bytes`);
    }
    const [task] = await tasks.create(target.principal, [
      {
        id,
        kind: 'upload',
        name: `upload ${baseName(target.path)} to ${bracketed(dst.mountPath, parentPath(dst.path))}`,
        payload: { dst: target.path, overwrite: target.overwrite },
        totalBytes: size,
        totalFiles: 1,
      },
    ]);
    if (!task) throw new FerryError('E_INTERNAL', 'task was not created');
    if (target.asTask) return { task: alistTask(task, flavourOf(request)) };
    const [finished] = await tasks.waitFinished([task.id], SYNC_UPLOAD_WAIT_MS);
    if (finished?.state === 'failed')
      throw new FerryError('E_BAD_REQUEST', finished.error || 'upload failed');
    return null;
  } catch (err) {
    if (!(await tasks.exists(id))) await rm(spool, { force: true });
    throw err;
  }
}

/** Stream `source` into the spool file and fsync it. Returns the byte count. */
async function spoolTo(path: string, source: Readable, request: FastifyRequest): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  let size = 0;
  try {
    source.on('data', (chunk: Buffer) => {
      size += chunk.length;
    });
    await pipeline(source, createWriteStream(path, { highWaterMark: 1 << 20 }));
    // fsync through a second descriptor: it flushes the file, whichever descriptor wrote it.
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await rm(path, { force: true });
    request.log.warn({ err }, 'upload body ended early');
    throw new FerryError('E_BAD_REQUEST', 'upload body ended early', { cause: err });
  }
  return size;
}
