import type { LookupAddress } from 'node:dns';
import { rm, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { OfflineDownloadConfig } from '../config.ts';
import { FerryError, fromFsError } from '../errors.ts';
import { writebackOf } from '../storage/local/background-flush.ts';
import { nameFromDisposition } from './disposition.ts';
import { nameFromUrl } from './file-name.ts';
import { HttpTimeoutError } from './http-get.ts';
import { HttpThread, type ThreadResponse } from './http-threads.ts';
import { bareHost, type HostPolicy } from './url-policy.ts';

/** What a download remembers between attempts (kept in the task's payload): resume validators. */
export interface HttpResumeState {
  /** Strong ETag of the representation being fetched, if the server sent one. */
  etag?: string;
  lastModified?: string;
  /** Full size, when the server told it. */
  size?: number;
  fileName?: string;
}

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

/**
 * SimpleHttp: one file over HTTP(S), each request on a connection of its own, in SimpleHttp's
 * thread (`HttpThread`), which writes the body to the file straight from the buffer the socket
 * reads into (`HttpGet`). Redirects are followed by hand (at most `maxRedirects`), so every hop's
 * URL is checked, and every hop's host is resolved through the policy's `lookup`: the thread
 * connects only to the addresses it let through. A partial file with validators is resumed with
 * `Range` + `If-Range`; a server that answers 200 (no ranges, or the file changed) starts it over.
 */
export class HttpDownloader {
  private readonly thread = new HttpThread();

  constructor(
    private readonly config: OfflineDownloadConfig,
    private readonly policy: HostPolicy,
  ) {}

  /** Drop every connection at once; called at shutdown, after the running downloads were aborted. */
  async close(): Promise<void> {
    await this.thread.close();
  }

  /** Download to `partPath` until complete; returns the file name and size. Errors: see `downloadError`. */
  async download(options: HttpDownloadOptions): Promise<{ fileName: string; size: number }> {
    const { signal, partPath } = options;
    let state = options.state;
    const have = await stat(partPath).then(
      (s) => s.size,
      () => 0,
    );
    // Resume only what can be verified: a validator for If-Range is required.
    let offset = have > 0 && (state.etag || state.lastModified) ? have : 0;
    // The response being read: dropped on any failure, so no connection stays open.
    let current: ThreadResponse | null = null;
    try {
      let res = await this.fetch(options.url, signal, offset > 0 ? rangeHeaders(offset, state) : {});
      current = res.response;
      if (offset > 0 && res.response.statusCode === 416 && state.size === offset) {
        res.response.drop();
        return { fileName: state.fileName ?? nameFromUrl(res.url), size: offset };
      }
      if (offset > 0 && !resumable(res.response, offset, state)) {
        // The file changed, or the server ignores ranges: start over.
        res.response.drop();
        offset = 0;
        res = await this.fetch(options.url, signal, {});
        current = res.response;
      }
      const { response } = res;
      checkStatus(response, res.url);
      const length = Number(response.headers['content-length'] ?? Number.NaN);
      const total = Number.isFinite(length) ? offset + length : 0;
      const max = this.config.maxBytes;
      if (max > 0 && total > max)
        throw new FerryError(
          'E_BAD_REQUEST',
          `file is ${total} bytes, over offlineDownload.maxBytes (${max})`,
        );
      const fileName =
        nameFromDisposition(response.headers['content-disposition']) ??
        state.fileName ??
        nameFromUrl(res.url);
      state = {
        ...validators(response),
        ...(total > 0 && { size: total }),
        fileName,
      };
      await options.saveState(state);
      if (offset === 0) await rm(partPath, { force: true });
      options.onStart({ offset, total, fileName });
      // The file goes to disk while it downloads, so the fsync at the end is short.
      const flush = writebackOf(partPath, options.sync);
      // Resumed: written on from the end of the partial file (O_APPEND would ignore positions).
      const saved = await response.save(partPath, offset, max, signal, (bytes) => {
        options.onBytes(bytes);
        flush.wrote(bytes);
      });
      current = null;
      const written = offset + saved.bytes;
      if (!saved.complete || (total > 0 && written !== total))
        throw new FerryError(
          'E_BACKEND',
          `connection closed after ${written}${total > 0 ? ` of ${total}` : ''} bytes`,
        );
      // Durable before the task may say it succeeded (unless left to the OS).
      await flush.finish();
      return { fileName, size: written };
    } catch (err) {
      current?.drop();
      throw downloadError(err, signal, options.url);
    }
  }

  /** GET with redirects followed by hand; each hop is checked before it is fetched. */
  private async fetch(
    start: URL,
    signal: AbortSignal,
    headers: Record<string, string>,
  ): Promise<{ url: URL; response: ThreadResponse }> {
    let url = start;
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new FerryError('E_BAD_REQUEST', `redirected to an unsupported scheme ${url.protocol}`);
      this.policy.checkName(url.hostname);
      const response = await this.thread.open(url, {
        addresses: await this.addressesOf(url.hostname),
        headers: { 'user-agent': 'ferry', ...headers },
        signal,
        connectTimeoutMs: this.config.connectTimeoutMs,
        idleTimeoutMs: this.config.idleTimeoutMs,
      });
      const location = response.headers.location;
      if (response.statusCode >= 300 && response.statusCode < 400 && location) {
        response.drop();
        if (hop >= this.config.maxRedirects)
          throw new FerryError('E_REMOTE_REFUSED', `more than ${this.config.maxRedirects} redirects`);
        url = new URL(location, url);
        continue;
      }
      return { url, response };
    }
  }

  /**
   * Where `hostname` resolves to, through the policy's lookup, which refuses blocked addresses:
   * the thread connects to these only, so what was checked is what is reached.
   */
  private addressesOf(hostname: string): Promise<LookupAddress[]> {
    const host = bareHost(hostname);
    const family = isIP(host);
    if (family !== 0) return Promise.resolve([{ address: host, family }]);
    return new Promise((resolve, reject) =>
      this.policy.lookup(host, { all: true }, (err, addresses) =>
        err ? reject(err) : resolve(addresses as LookupAddress[]),
      ),
    );
  }
}

function rangeHeaders(offset: number, state: HttpResumeState): Record<string, string> {
  const ifRange = state.etag ?? state.lastModified;
  return { range: `bytes=${offset}-`, ...(ifRange && { 'if-range': ifRange }) };
}

/** A 206 that continues exactly at `offset` of the same representation. */
function resumable(response: ThreadResponse, offset: number, state: HttpResumeState): boolean {
  if (response.statusCode !== 206) return false;
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(String(response.headers['content-range'] ?? ''));
  if (!m || Number(m[1]) !== offset) return false;
  if (state.size !== undefined && m[2] !== '*' && Number(m[2]) !== state.size) return false;
  const now = validators(response);
  if (state.etag && now.etag && now.etag !== state.etag) return false;
  return true;
}

/** Strong validators only: a weak ETag may not be used with If-Range. */
function validators(response: ThreadResponse): Pick<HttpResumeState, 'etag' | 'lastModified'> {
  const etag = response.headers.etag;
  const lastModified = response.headers['last-modified'];
  return {
    ...(typeof etag === 'string' && !etag.startsWith('W/') && { etag }),
    ...(typeof lastModified === 'string' && { lastModified }),
  };
}

/** 2xx passes; 4xx (but 408, 429) fails the task at once; 5xx and the rest are retried. */
function checkStatus(response: ThreadResponse, url: URL): void {
  const status = response.statusCode;
  if (status >= 200 && status < 300) return;
  const what = `HTTP ${status} from ${url.host}${url.pathname}`;
  if (status >= 400 && status < 500 && status !== 408 && status !== 429)
    throw new FerryError('E_REMOTE_REFUSED', `download refused: ${what}`);
  throw new FerryError('E_BACKEND', `download failed: ${what}`);
}

/** Turn whatever a download threw into a coded error with a message a user can act on. */
function downloadError(err: unknown, signal: AbortSignal, url: URL): Error {
  if (signal.aborted)
    return signal.reason instanceof Error ? signal.reason : new FerryError('E_CANCELED', 'canceled');
  // A refusal from the policy's lookup arrives wrapped by the socket layer.
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof FerryError) return e;
  const e = err as NodeJS.ErrnoException;
  const host = url.host;
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN')
    return new FerryError('E_BACKEND', `cannot resolve ${host}`, { cause: err });
  if (err instanceof HttpTimeoutError)
    return new FerryError('E_BACKEND', `timed out talking to ${host}: ${e.message}`, { cause: err });
  // Our own side failing (disk full, permissions) says so, with ferry's code for it.
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EACCES' || e.code === 'EROFS')
    return fromFsError(err, 'the offline download area');
  if (e.code === 'ECONNREFUSED')
    return new FerryError('E_BACKEND', `connection refused by ${host}`, { cause: err });
  return new FerryError('E_BACKEND', `download from ${host} interrupted: ${e.message ?? String(err)}`, {
    cause: err,
  });
}
