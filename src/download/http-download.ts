import { open, stat } from 'node:fs/promises';
import { pipeline as pipeStreams, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { OfflineDownloadConfig } from '../config.ts';
import { FerryError } from '../errors.ts';
import { writebackOf } from '../io/background-flush.ts';
import { nameFromDisposition } from './disposition.ts';
import { nameFromUrl } from './file-name.ts';
import { FileWriter } from './file-writer.ts';
import { HttpDispatchers } from './http-dispatchers.ts';
import {
  checkStatus,
  downloadError,
  flatHeaders,
  type Hop,
  type HttpResumeState,
  type Opened,
  rangeHeaders,
  resumable,
  validators,
} from './http-response.ts';
import type { HostPolicy } from './url-policy.ts';

export type { HttpResumeState } from './http-response.ts';

/** Redirect bodies are read (so the connection can serve the next hop) up to this much, else dropped. */
const REDIRECT_BODY_BYTES = 64 * 1024;

export interface HttpDownloadOptions {
  url: URL;
  /** The partial file; bytes already in it are kept when the server can resume. */
  partPath: string;
  signal: AbortSignal;
  state: HttpResumeState;
  /** Persist the validators before the first byte is written, so a restart can resume. */
  saveState(state: HttpResumeState): Promise<void>;
  /** Called once the response is known: bytes already present, and the total (0 when unknown). */
  onStart(info: { offset: number; total: number; fileName: string }): void;
  onBytes(bytes: number): void;
  /** Flush the file to disk as it downloads and before returning; false leaves that to the OS. */
  sync: boolean;
}

/** What `HttpDownloader.stream` learnt from the response's head. */
export interface StreamStart {
  fileName: string;
  /** The body's size when the server told it, else 0. */
  total: number;
}

export interface HttpStreamOptions {
  url: URL;
  signal: AbortSignal;
  /**
   * Store the whole `body` (a destination driver's `write`); resolves once it is in place. It
   * must consume `body` to its end: a body cut short errors, so nothing incomplete is placed.
   */
  consume(body: Readable, start: StreamStart): Promise<void>;
}

/**
 * SimpleHttp: one file over HTTP(S) with undici, on keep-alive connections (`HttpDispatchers`:
 * direct, or through the configured proxy). Redirects are followed by hand (at most
 * `maxRedirects`), each hop's scheme and host checked by the policy first, and direct connections
 * resolve names through the policy's `lookup`, so every address connected to was checked. A
 * partial file with validators is resumed with `Range` + `If-Range`; a server that answers 200
 * (no ranges, or the file changed) starts it over. `download` writes the body into a file at
 * explicit positions; `stream` hands it to a consumer (upload_download_stream).
 */
export class HttpDownloader {
  private readonly routes: HttpDispatchers;

  constructor(
    private readonly config: OfflineDownloadConfig,
    private readonly policy: HostPolicy,
  ) {
    this.routes = new HttpDispatchers(config, policy);
  }

  /** Drop every connection at once; called at shutdown, after the running downloads were aborted. */
  async close(): Promise<void> {
    await this.routes.close();
  }

  /** Download to `partPath` until complete; returns the file name and size. Errors: see `downloadError`. */
  async download(options: HttpDownloadOptions): Promise<{ fileName: string; size: number }> {
    const { signal, partPath } = options;
    const hop: Hop = { url: options.url, proxied: false };
    const have = await stat(partPath).then(
      (s) => s.size,
      () => 0,
    );
    // Resume only what can be verified: a validator for If-Range is required.
    let offset = have > 0 && (options.state.etag || options.state.lastModified) ? have : 0;
    // The response being read: dropped on any failure, so no connection stays open.
    let res: Opened | null = null;
    try {
      res = await this.fetch(signal, hop, offset > 0 ? rangeHeaders(offset, options.state) : {});
      if (offset > 0 && res.statusCode === 416 && options.state.size === offset) {
        await discard(res.body, signal);
        return { fileName: options.state.fileName ?? nameFromUrl(res.url), size: offset };
      }
      if (offset > 0 && !resumable(res, offset, options.state)) {
        // The file changed, or the server ignores ranges: start over. A 200 is the whole file.
        offset = 0;
        if (res.statusCode !== 200) {
          drop(res.body);
          hop.url = options.url;
          res = await this.fetch(signal, hop, {});
        }
      }
      const { fileName, total } = this.accept(res, offset, options.state.fileName);
      await options.saveState({ ...validators(res), ...(total > 0 && { size: total }), fileName });
      options.onStart({ offset, total, fileName });
      // The file goes to disk while it downloads, so the fsync at the end is short.
      const flush = writebackOf(partPath, options.sync);
      // Resumed: written on from the end of the partial file; otherwise the file starts empty.
      const file = await open(partPath, offset > 0 ? 'r+' : 'w');
      let end = offset;
      try {
        const writer = new FileWriter(file, {
          position: offset,
          maxBytes: this.config.maxBytes,
          onWritten: (bytes) => {
            options.onBytes(bytes);
            flush.wrote(bytes);
          },
        });
        await pipeline(res.body, writer, { signal });
        end = writer.bytesEnd;
      } finally {
        await file.close();
      }
      // undici fails a body shorter than its Content-Length; this holds whatever the framing.
      if (total > 0 && end !== total)
        throw new FerryError('E_BACKEND', `connection closed after ${end} of ${total} bytes`);
      // Durable before the task may say it succeeded (unless left to the OS).
      await flush.finish();
      return { fileName, size: end };
    } catch (err) {
      if (res) drop(res.body);
      throw downloadError(err, signal, hop, this.config);
    }
  }

  /**
   * Fetch `url` and hand its body to `consume`, with no copy on ferry's disk; returns the file
   * name. There is no resuming: another attempt starts over. Errors of the body (a cut, a
   * timeout, the size limit) come out as `download` would throw them, the consumer's as they are.
   */
  async stream(options: HttpStreamOptions): Promise<{ fileName: string }> {
    const { signal } = options;
    const hop: Hop = { url: options.url, proxied: false };
    let res: Opened | null = null;
    let bodyError: unknown = null;
    try {
      res = await this.fetch(signal, hop, {});
      const start = this.accept(res, 0, undefined);
      const max = this.config.maxBytes;
      // A body of unknown length is counted on the way: the limit holds without a Content-Length.
      const body = max > 0 && start.total === 0 ? pipeStreams(res.body, limiter(max), () => {}) : res.body;
      body.once('error', (err) => {
        bodyError ??= err;
      });
      await options.consume(body, start);
      return { fileName: start.fileName };
    } catch (err) {
      if (res) drop(res.body);
      if (bodyError !== null || res === null || signal.aborted)
        throw downloadError(bodyError ?? err, signal, hop, this.config);
      throw err;
    }
  }

  /** The response is the file: its status is a success, its size within limits; names it. */
  private accept(res: Opened, offset: number, knownName: string | undefined): StreamStart {
    checkStatus(res);
    const length = Number(res.headers['content-length'] ?? Number.NaN);
    const total = Number.isFinite(length) ? offset + length : 0;
    const max = this.config.maxBytes;
    if (max > 0 && total > max)
      throw new FerryError('E_BAD_REQUEST', `file is ${total} bytes, over offlineDownload.maxBytes (${max})`);
    const fileName =
      nameFromDisposition(res.headers['content-disposition']) ?? knownName ?? nameFromUrl(res.url);
    return { fileName, total };
  }

  /**
   * GET `hop.url` with redirects followed by hand; each hop is checked before it is fetched, and
   * `hop` follows the request (for error messages). Resolves once the final response's head is in.
   */
  private async fetch(signal: AbortSignal, hop: Hop, headers: Record<string, string>): Promise<Opened> {
    for (let hops = 0; ; hops++) {
      const url = hop.url;
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new FerryError('E_BAD_REQUEST', `redirected to an unsupported scheme ${url.protocol}`);
      this.policy.checkName(url.hostname);
      const route = this.routes.routeOf(url);
      hop.proxied = route.proxied;
      const res = await route.dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { 'user-agent': 'ferry', ...headers },
        signal,
        headersTimeout: this.config.connectTimeoutMs,
        bodyTimeout: this.config.idleTimeoutMs,
      });
      const opened: Opened = {
        url,
        statusCode: res.statusCode,
        headers: flatHeaders(res.headers),
        body: res.body,
      };
      const location = opened.headers.location;
      if (res.statusCode < 300 || res.statusCode >= 400 || !location) return opened;
      await discard(res.body, signal);
      if (hops >= this.config.maxRedirects)
        throw new FerryError('E_REMOTE_REFUSED', `more than ${this.config.maxRedirects} redirects`);
      hop.url = nextHop(location, url);
    }
  }
}

/** Where a redirect leads; a `Location` that is no URL is the server's fault, and final. */
function nextHop(location: string, from: URL): URL {
  try {
    return new URL(location, from);
  } catch {
    throw new FerryError(
      'E_REMOTE_REFUSED',
      `redirected to a bad location by ${from.host}: ${location.slice(0, 200)}`,
    );
  }
}

/** Read a small body to its end (the connection stays usable), or drop it (and the connection). */
async function discard(body: Opened['body'], signal: AbortSignal): Promise<void> {
  await body.dump({ signal, limit: REDIRECT_BODY_BYTES }).catch(() => drop(body));
}

/**
 * Close a body not read to its end, and its connection. undici's body reports that as an
 * "aborted" error: listened to here, as nothing else may be listening any more.
 */
function drop(body: Opened['body']): void {
  body.on('error', () => {});
  body.destroy();
}

/** Passes bytes through until more than `max` went by, then fails with the size limit's error. */
function limiter(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > max)
        done(new FerryError('E_BAD_REQUEST', `download exceeds offlineDownload.maxBytes (${max})`));
      else done(null, chunk);
    },
  });
}
