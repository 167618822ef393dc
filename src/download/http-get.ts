import { writeSync } from 'node:fs';
import { isIP, type LookupFunction, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { HTTPParser } from 'http-parser-js';
import { bareHost } from './url-policy.ts';

/**
 * The socket reads into this one buffer, again and again, and each read's body bytes are written
 * to the file from it at once, with a synchronous write, before the next read: what curl does.
 * The bytes are still in the CPU's cache when they are written. A socket's `data` events would
 * allocate a new 64 KiB buffer for each read instead. For 1 GiB from nginx on loopback, measured
 * in one series on this project's 2-core VM:
 * - reads alone: 0.6 s this way, 1.2–1.6 s through `data` events (curl to /dev/null: 0.7 s);
 * - to a file: 0.8–1.0 s this way (in a worker thread), 1.3–1.6 s with the writes on libuv's
 *   thread pool, 1.5–2.0 s for `curl -o`.
 * The writes block, so this runs in a thread of its own (http-thread.ts), never in the server's.
 */
const READ_BYTES = 256 * 1024;

export interface HttpGetOptions {
  /** Extra request headers (lower-case names); values must not hold CR or LF. */
  headers: Record<string, string>;
  /** Resolves the host name for the connection. */
  lookup: LookupFunction;
  /** For connecting and then for the response's head. */
  connectTimeoutMs: number;
  /** For the body: the longest wait for the next bytes. */
  idleTimeoutMs: number;
}

/** No connection, no response head or no body bytes in time; `message` says which. */
export class HttpTimeoutError extends Error {
  override readonly name = 'HttpTimeoutError';
}

/** How a body ended: `complete` is false when the connection closed before its end. */
export interface SavedBody {
  bytes: number;
  complete: boolean;
}

interface Sink {
  fd: number;
  position: number;
  bytes: number;
  /** Called with each piece's size before it is written; may throw to refuse it (a size limit). */
  onBody(bytes: number): void;
  resolve(saved: SavedBody): void;
  reject(err: unknown): void;
}

/**
 * One HTTP/1.1 GET on a connection of its own (`Connection: close`), for SimpleHttp's big files:
 * `open` connects and sends it, `head` resolves once the response's status and headers are in,
 * and `saveTo` then writes the body into a file at a position, straight from the buffer the
 * socket reads into. The response
 * is parsed by http-parser-js, which hands out the body as views of that buffer; redirects,
 * validators and retries are the caller's. Any failure, and `destroy`, closes the connection.
 */
export class HttpGet {
  statusCode = 0;
  /** Response headers by lower-case name; repeated ones joined with ", ". */
  headers: Record<string, string> = {};

  private readonly socket: Socket;
  private readonly parser = new HTTPParser(HTTPParser.RESPONSE);
  private readonly buffer = Buffer.allocUnsafeSlow(READ_BYTES);
  /** Body bytes that came in with the head, before `saveTo`: copies, written first. */
  private early: Buffer[] = [];
  private sink: Sink | null = null;
  /** Reading stopped: the body waits for `saveTo`. */
  private stopped = false;
  private complete = false;
  private ended = false;
  private failure: unknown = null;
  /** Resolves once the response's head is in (status and headers); rejects on a failure before. */
  readonly head: Promise<HttpGet>;
  private headReceived!: (get: HttpGet) => void;
  private headFailed!: (err: unknown) => void;

  private constructor(
    url: URL,
    private readonly options: HttpGetOptions,
  ) {
    this.head = new Promise((resolve, reject) => {
      this.headReceived = resolve;
      this.headFailed = reject;
    });
    // Whoever holds the connection may never look at `head` (it was dropped first).
    this.head.catch(() => undefined);
    this.parser[HTTPParser.kOnHeadersComplete] = (info) => this.onHead(info.statusCode, info.headers);
    this.parser[HTTPParser.kOnBody] = (chunk, offset, length) =>
      this.onBody(chunk.subarray(offset, offset + length));
    this.parser[HTTPParser.kOnMessageComplete] = () => {
      this.complete = true;
    };

    const host = bareHost(url.hostname);
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const onread = { buffer: this.buffer, callback: (bytes: number) => this.onRead(bytes) };
    const request = requestHead(url, options.headers);
    this.socket =
      url.protocol === 'https:'
        ? tlsConnect(
            // tls.connect takes `onread` as net.connect does; Node's types leave it out.
            {
              host,
              port,
              lookup: options.lookup,
              onread,
              ...(isIP(host) === 0 && { servername: host }),
              ALPNProtocols: ['http/1.1'],
            } as ConnectionOptions,
            () => this.socket.write(request),
          )
        : netConnect({ host, port, lookup: options.lookup, onread }, () => this.socket.write(request));
    this.socket.setTimeout(options.connectTimeoutMs, () => {
      // Stopped, the body waits for saveTo: no silence of the server's.
      if (this.stopped) return;
      this.fail(
        new HttpTimeoutError(
          this.statusCode === 0
            ? `no response within ${options.connectTimeoutMs} ms`
            : `no data for ${options.idleTimeoutMs} ms`,
        ),
      );
    });
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.onEnd());
  }

  /**
   * Connect and send the GET at once; `head` tells when the answer's head is in. `destroy` stops
   * it at any time, also before the head. Throws on a header value that holds a line break.
   */
  static open(url: URL, options: HttpGetOptions): HttpGet {
    for (const value of Object.values(options.headers))
      if (/[\r\n]/.test(value)) throw new TypeError('a header value holds a line break');
    return new HttpGet(url, options);
  }

  /**
   * Write the body into the file `fd` from `position` on; `onBody` comes before each piece.
   * Resolves once the body ended (or the connection closed early: `complete` false), rejects on
   * the first failure.
   */
  saveTo(fd: number, position: number, onBody: (bytes: number) => void): Promise<SavedBody> {
    return new Promise((resolve, reject) => {
      this.sink = { fd, position, bytes: 0, onBody, resolve, reject };
      const early = this.early;
      this.early = [];
      for (const view of early) this.write(view);
      if (this.stopped && !this.failure && !this.ended) {
        this.stopped = false;
        // With `onread`, read(0) starts the handle reading again.
        this.socket.read(0);
      }
      this.settle();
    });
  }

  /** Close the connection; a `saveTo` running fails with `err`. */
  destroy(err: unknown = new Error('response abandoned')): void {
    this.fail(err);
  }

  private onRead(bytes: number): boolean {
    const result = this.parser.execute(this.buffer, 0, bytes);
    // Once the response is complete, the rest is not parsed (the connection is closing); the
    // parser, ready for a next response, would count the read's body bytes as header bytes.
    if (result instanceof Error && !this.complete) {
      this.fail(new Error(`bad HTTP response: ${result.message}`));
      return false;
    }
    if (this.complete) this.settle();
    return !this.stopped && !this.failure;
  }

  private onHead(status: number, raw: string[]): number {
    this.statusCode = status;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      const had = this.headers[name];
      this.headers[name] = had === undefined ? value : `${had}, ${value}`;
    }
    this.socket.setTimeout(this.options.idleTimeoutMs);
    // The body waits for saveTo.
    this.stopped = true;
    this.headReceived(this);
    return 0;
  }

  private onBody(view: Buffer): void {
    if (this.sink) this.write(view);
    // Copied: a TLS socket told to stop reading still hands over what it already decrypted, into
    // the same buffer.
    else this.early.push(Buffer.from(view));
  }

  private write(view: Buffer): void {
    const sink = this.sink;
    if (!sink || this.failure) return;
    try {
      sink.onBody(view.length);
      for (let done = 0; done < view.length; )
        done += writeSync(sink.fd, view, done, view.length - done, sink.position + sink.bytes + done);
      sink.bytes += view.length;
    } catch (err) {
      this.fail(err);
    }
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    // A body without a length ends with the connection.
    if (!this.complete && this.statusCode !== 0) this.parser.finish();
    if (this.statusCode === 0) this.fail(new Error('connection closed before a response'));
    this.settle();
  }

  /** Resolve or reject `saveTo` once the body ended or failed. */
  private settle(): void {
    const sink = this.sink;
    if (!sink) return;
    if (this.failure) {
      this.sink = null;
      sink.reject(this.failure);
    } else if (this.complete || this.ended) {
      this.sink = null;
      this.socket.destroy();
      sink.resolve({ bytes: sink.bytes, complete: this.complete });
    }
  }

  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.destroy();
    if (this.statusCode === 0) this.headFailed(err);
    this.settle();
  }
}

/** The request's head: a GET of `url`'s path and query, closing the connection after it. */
function requestHead(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`, 'connection: close'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}
