/**
 * The worker thread SimpleHttp's transfers run in (started by `HttpThread`, http-threads.ts). It
 * holds the connections (`HttpGet`) and writes the bodies with synchronous writes, so a slow disk
 * never blocks the server's event loop. The server decides (redirects, resumes, limits) on each
 * response's head; this thread only connects where it is told, to the addresses the server's
 * host policy already checked. Messages: see `ThreadRequest` and `ThreadReply`.
 */

import type { LookupAddress } from 'node:dns';
import { closeSync, openSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { parentPort } from 'node:worker_threads';
import { HttpGet, HttpTimeoutError } from './http-get.ts';

export type ThreadRequest =
  | {
      op: 'open';
      id: number;
      url: string;
      /** Where the host name resolved to, checked by the policy: the only addresses tried. */
      addresses: LookupAddress[];
      headers: Record<string, string>;
      connectTimeoutMs: number;
      idleTimeoutMs: number;
    }
  | {
      op: 'save';
      id: number;
      path: string;
      /** Write from here on in the existing file; 0 creates (or empties) it. */
      position: number;
      /** Fail once the file would grow past this many bytes (0: no limit). */
      maxBytes: number;
    }
  /** Close the connection; a `save` running fails (its reply says `dropped`). */
  | { op: 'drop'; id: number };

/** An error as it crosses threads: `kind` says what the server makes of it. */
export interface ThreadError {
  kind: 'timeout' | 'limit' | 'dropped' | 'other';
  message: string;
  code?: string;
}

export type ThreadReply =
  | { op: 'head'; id: number; statusCode: number; headers: Record<string, string> }
  /** Bytes written since the last such reply (a few per second, not one per write). */
  | { op: 'bytes'; id: number; bytes: number }
  | { op: 'saved'; id: number; bytes: number; complete: boolean }
  | { op: 'failed'; id: number; error: ThreadError };

/** Progress goes out at most this often, and at the end. */
const PROGRESS_MS = 100;

class LimitError extends Error {}
class DroppedError extends Error {}

const port = parentPort;
if (!port) throw new Error('http-thread.ts runs in a worker thread');
const gets = new Map<number, HttpGet>();
const reply = (message: ThreadReply) => port.postMessage(message);

port.on('message', (req: ThreadRequest) => {
  if (req.op === 'open') open(req);
  else if (req.op === 'save') save(req);
  else {
    gets.get(req.id)?.destroy(new DroppedError('dropped'));
    gets.delete(req.id);
  }
});

function open(req: Extract<ThreadRequest, { op: 'open' }>): void {
  const { addresses } = req;
  const lookup: LookupFunction = (_host, options, callback) => {
    const first = addresses[0];
    if (options.all) callback(null, addresses);
    else if (first) callback(null, first.address, first.family);
    else callback(Object.assign(new Error('no address'), { code: 'ENOTFOUND' }), '', 0);
  };
  let get: HttpGet;
  try {
    get = HttpGet.open(new URL(req.url), {
      headers: req.headers,
      lookup,
      connectTimeoutMs: req.connectTimeoutMs,
      idleTimeoutMs: req.idleTimeoutMs,
    });
  } catch (err) {
    reply({ op: 'failed', id: req.id, error: threadError(err) });
    return;
  }
  // Held from the start, so a `drop` closes it even before the server answered.
  gets.set(req.id, get);
  get.head.then(
    () => reply({ op: 'head', id: req.id, statusCode: get.statusCode, headers: get.headers }),
    (err: unknown) => {
      gets.delete(req.id);
      reply({ op: 'failed', id: req.id, error: threadError(err) });
    },
  );
}

function save(req: Extract<ThreadRequest, { op: 'save' }>): void {
  const get = gets.get(req.id);
  if (!get) {
    reply({ op: 'failed', id: req.id, error: { kind: 'dropped', message: 'no such response' } });
    return;
  }
  let fd: number;
  try {
    fd = openSync(req.path, req.position > 0 ? 'r+' : 'w');
  } catch (err) {
    get.destroy(err);
    gets.delete(req.id);
    reply({ op: 'failed', id: req.id, error: threadError(err) });
    return;
  }
  let unsent = 0;
  let sentAt = performance.now();
  let size = req.position;
  get
    .saveTo(fd, req.position, (bytes) => {
      size += bytes;
      if (req.maxBytes > 0 && size > req.maxBytes) throw new LimitError(`${req.maxBytes}`);
      unsent += bytes;
      const now = performance.now();
      if (now - sentAt >= PROGRESS_MS) {
        reply({ op: 'bytes', id: req.id, bytes: unsent });
        unsent = 0;
        sentAt = now;
      }
    })
    .then(
      (saved) => {
        if (unsent > 0) reply({ op: 'bytes', id: req.id, bytes: unsent });
        reply({ op: 'saved', id: req.id, bytes: saved.bytes, complete: saved.complete });
      },
      (err: unknown) => {
        if (unsent > 0) reply({ op: 'bytes', id: req.id, bytes: unsent });
        reply({ op: 'failed', id: req.id, error: threadError(err) });
      },
    )
    .finally(() => {
      gets.delete(req.id);
      closeSync(fd);
    });
}

function threadError(err: unknown): ThreadError {
  const e = err as NodeJS.ErrnoException;
  const message = e?.message ?? String(err);
  if (err instanceof HttpTimeoutError) return { kind: 'timeout', message };
  if (err instanceof LimitError) return { kind: 'limit', message };
  if (err instanceof DroppedError) return { kind: 'dropped', message };
  return { kind: 'other', message, ...(typeof e?.code === 'string' && { code: e.code }) };
}
