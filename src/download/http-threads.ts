import type { LookupAddress } from 'node:dns';
import { Worker } from 'node:worker_threads';
import { FerryError } from '../errors.ts';
import { HttpTimeoutError, type SavedBody } from './http-get.ts';
import type { ThreadError, ThreadReply, ThreadRequest } from './http-thread.ts';

/**
 * The thread's module beside this one: http-thread.ts under tsx, http-thread.js in the bundle
 * (`npm run build` makes it an entry point of its own, next to the chunk this code lands in).
 */
const THREAD_URL = new URL(
  import.meta.url.endsWith('.ts') ? './http-thread.ts' : './http-thread.js',
  import.meta.url,
);

interface Waiter {
  head?(reply: Extract<ThreadReply, { op: 'head' }>): void;
  bytes?(bytes: number): void;
  saved?(saved: SavedBody): void;
  failed(error: Error): void;
}

export interface OpenOptions {
  addresses: LookupAddress[];
  headers: Record<string, string>;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  signal: AbortSignal;
}

/**
 * SimpleHttp's transfers, run in one worker thread (http-thread.ts) that starts on first use.
 * `open` sends a GET and resolves with the response's head as a `ThreadResponse`; its `save`
 * writes the body to a file in that thread. A thread that dies fails what was waiting on it, and
 * the next request starts another.
 */
export class HttpThread {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();

  /** Connect to one of `addresses` (already checked), send the GET, resolve once its head is in. */
  open(url: URL, options: OpenOptions): Promise<ThreadResponse> {
    options.signal.throwIfAborted();
    const id = this.nextId++;
    return new Promise<ThreadResponse>((resolve, reject) => {
      const onAbort = () => {
        // The head may still come: the connection is then dropped, as nothing waits for it.
        this.forget(id);
        this.drop(id);
        reject(options.signal.reason);
      };
      options.signal.addEventListener('abort', onAbort, { once: true });
      const settled = () => {
        options.signal.removeEventListener('abort', onAbort);
        this.forget(id);
      };
      this.wait(id, {
        head: (head) => {
          settled();
          resolve(new ThreadResponse(this, id, head.statusCode, head.headers));
        },
        failed: (err) => {
          settled();
          reject(err);
        },
      });
      try {
        this.post({
          op: 'open',
          id,
          url: url.href,
          addresses: options.addresses,
          headers: options.headers,
          connectTimeoutMs: options.connectTimeoutMs,
          idleTimeoutMs: options.idleTimeoutMs,
        });
      } catch (err) {
        // The thread could not start.
        settled();
        reject(err);
      }
    });
  }

  /** Stop the thread: every connection in it closes, and what waits on it fails. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.failAll(new FerryError('E_CANCELED', 'ferry is shutting down'));
    await worker?.terminate();
  }

  /** @internal for ThreadResponse */
  wait(id: number, waiter: Waiter): void {
    this.waiting.set(id, waiter);
    this.worker?.ref();
  }

  /** @internal for ThreadResponse */
  forget(id: number): void {
    this.waiting.delete(id);
    // An idle thread keeps no process alive.
    if (this.waiting.size === 0) this.worker?.unref();
  }

  /** @internal for ThreadResponse */
  post(req: ThreadRequest): void {
    this.start().postMessage(req);
  }

  /**
   * @internal for ThreadResponse: close a connection, if the thread that holds it still runs
   * (none is started for it: a thread that ended took its connections with it).
   */
  drop(id: number): void {
    this.worker?.postMessage({ op: 'drop', id } satisfies ThreadRequest);
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = THREAD_URL.pathname.endsWith('.ts')
      ? // Under tsx (tests, `npm run dev`) a worker does not inherit its loader: it registers it.
        new Worker(
          `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
            `.then((tsx) => { tsx.register(); return import(${JSON.stringify(THREAD_URL.href)}); })`,
          { eval: true },
        )
      : new Worker(THREAD_URL);
    worker.on('message', (reply: ThreadReply) => {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) {
        // A head nobody waits for any more (canceled while connecting): close it.
        if (reply.op === 'head') this.drop(reply.id);
        return;
      }
      if (reply.op === 'head') waiter.head?.(reply);
      else if (reply.op === 'bytes') waiter.bytes?.(reply.bytes);
      else if (reply.op === 'saved') waiter.saved?.({ bytes: reply.bytes, complete: reply.complete });
      else waiter.failed(errorOf(reply.error));
    });
    const died = (err: Error) => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.failAll(err);
    };
    worker.on('error', died);
    worker.on('exit', (code) => died(new Error(`the SimpleHttp thread exited with ${code}`)));
    if (this.waiting.size === 0) worker.unref();
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiting) w.failed(err);
  }
}

/** A response whose head is in; its connection stays in the thread until `save` or `drop`. */
export class ThreadResponse {
  constructor(
    private readonly thread: HttpThread,
    private readonly id: number,
    readonly statusCode: number,
    readonly headers: Record<string, string>,
  ) {}

  /**
   * Write the body to `path` from `position` on (0 creates the file) in the thread; `onBytes`
   * follows the bytes written, a few times a second. Past `maxBytes` (0: none) the file would
   * grow no further: the download fails. An abort drops the connection, and rejects once the
   * thread stopped writing.
   */
  save(
    path: string,
    position: number,
    maxBytes: number,
    signal: AbortSignal,
    onBytes: (bytes: number) => void,
  ): Promise<SavedBody> {
    return new Promise<SavedBody>((resolve, reject) => {
      const onAbort = () => this.drop();
      signal.addEventListener('abort', onAbort, { once: true });
      const settled = () => {
        signal.removeEventListener('abort', onAbort);
        this.thread.forget(this.id);
      };
      this.thread.wait(this.id, {
        bytes: onBytes,
        saved: (saved) => {
          settled();
          resolve(saved);
        },
        failed: (err) => {
          settled();
          reject(signal.aborted ? signal.reason : err);
        },
      });
      this.thread.post({ op: 'save', id: this.id, path, position, maxBytes });
      if (signal.aborted) this.drop();
    });
  }

  /** Close the connection (the body is not wanted, or no more). */
  drop(): void {
    this.thread.drop(this.id);
  }
}

/** A thread's error as the server's: timeouts and limits keep their meaning, codes their code. */
function errorOf(error: ThreadError): Error {
  if (error.kind === 'timeout') return new HttpTimeoutError(error.message);
  if (error.kind === 'limit')
    return new FerryError('E_BAD_REQUEST', `download exceeds offlineDownload.maxBytes (${error.message})`);
  return Object.assign(new Error(error.message), error.code ? { code: error.code } : {});
}
