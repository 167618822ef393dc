import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { OfflineDownloadConfig } from '../config.ts';
import { FerryError, fromFsError } from '../errors.ts';

/** What a download remembers between attempts (kept in the task's payload): resume validators. */
export interface HttpResumeState {
  /** Strong ETag of the representation being fetched, if the server sent one. */
  etag?: string;
  lastModified?: string;
  /** Full size, when the server told it. */
  size?: number;
  fileName?: string;
}

/** A response at the end of its redirects, its head read and its body not yet. */
export interface Opened {
  /** The URL that answered (the last hop). */
  url: URL;
  statusCode: number;
  /** By lower-case name; a repeated header's values joined with ", ". */
  headers: Record<string, string>;
  body: Dispatcher.ResponseData['body'];
}

/** Where a request is, for error messages: the hop being fetched, and whether through a proxy. */
export interface Hop {
  url: URL;
  proxied: boolean;
}

/** undici's headers with a repeated one's values joined, as HTTP allows for most headers. */
export function flatHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers))
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
  return flat;
}

/** `Range` from `offset` on, conditional on the validator saved with the partial file. */
export function rangeHeaders(offset: number, state: HttpResumeState): Record<string, string> {
  const ifRange = state.etag ?? state.lastModified;
  return { range: `bytes=${offset}-`, ...(ifRange && { 'if-range': ifRange }) };
}

/** A 206 that continues exactly at `offset` of the same representation. */
export function resumable(response: Opened, offset: number, state: HttpResumeState): boolean {
  if (response.statusCode !== 206) return false;
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(response.headers['content-range'] ?? '');
  if (!m || Number(m[1]) !== offset) return false;
  if (state.size !== undefined && m[2] !== '*' && Number(m[2]) !== state.size) return false;
  const now = validators(response);
  if (state.etag && now.etag && now.etag !== state.etag) return false;
  return true;
}

/** Strong validators only: a weak ETag may not be used with If-Range. */
export function validators(response: Opened): Pick<HttpResumeState, 'etag' | 'lastModified'> {
  const { etag, 'last-modified': lastModified } = response.headers;
  return {
    ...(etag !== undefined && !etag.startsWith('W/') && { etag }),
    ...(lastModified !== undefined && { lastModified }),
  };
}

/** 2xx passes; 4xx (but 408, 429) fails the task at once; 5xx and the rest are retried. */
export function checkStatus(response: Opened): void {
  const status = response.statusCode;
  if (status >= 200 && status < 300) return;
  const what = `HTTP ${status} from ${response.url.host}${response.url.pathname}`;
  if (status >= 400 && status < 500 && status !== 408 && status !== 429)
    throw new FerryError('E_REMOTE_REFUSED', `download refused: ${what}`);
  throw new FerryError('E_BACKEND', `download failed: ${what}`);
}

/**
 * Turn whatever a download threw into a coded error with a message a user can act on: the
 * signal's reason once aborted, the policy's refusal however deeply the connection wrapped it,
 * undici's timeouts and parse errors in words, and local disk trouble as ferry's own codes.
 */
export function downloadError(
  err: unknown,
  signal: AbortSignal,
  hop: Hop,
  config: Pick<OfflineDownloadConfig, 'connectTimeoutMs' | 'idleTimeoutMs'>,
): Error {
  if (signal.aborted)
    return signal.reason instanceof Error ? signal.reason : new FerryError('E_CANCELED', 'canceled');
  // A refusal from the policy's lookup arrives as the connection's error, maybe wrapped.
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof FerryError) return e;
  const e = err as NodeJS.ErrnoException;
  const host = hop.url.host;
  const via = hop.proxied ? ' (through the proxy)' : '';
  const failed = (message: string) => new FerryError('E_BACKEND', message, { cause: err });
  switch (e.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return failed(`cannot resolve ${hop.proxied ? 'the proxy for ' : ''}${host}`);
    case 'ECONNREFUSED':
      return failed(
        hop.proxied ? `connection refused by the proxy for ${host}` : `connection refused by ${host}`,
      );
    case 'UND_ERR_CONNECT_TIMEOUT':
      return failed(`timed out talking to ${host}${via}: no connection within ${config.connectTimeoutMs} ms`);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return failed(`timed out talking to ${host}${via}: no response within ${config.connectTimeoutMs} ms`);
    case 'UND_ERR_BODY_TIMEOUT':
      return failed(`timed out talking to ${host}${via}: no data for ${config.idleTimeoutMs} ms`);
    // Our own side failing (disk full, permissions) says so, with ferry's code for it.
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EACCES':
    case 'EROFS':
      return fromFsError(err, 'the offline download area');
  }
  // undici reports a proxy's 407 (forward or CONNECT) in words only. Retrying will not help.
  if (hop.proxied && /\(407\)/.test(e.message ?? ''))
    return new FerryError(
      'E_REMOTE_REFUSED',
      `the proxy for ${host} wants other credentials (407 Proxy Authentication Required): check the proxy URL's user and password`,
      { cause: err },
    );
  // llhttp's codes: whatever answered does not speak HTTP/1.1.
  if (e.name === 'HTTPParserError' || e.code?.startsWith('HPE_'))
    return failed(`bad HTTP response from ${host}${via}: ${e.message}`);
  return failed(`download from ${host}${via} interrupted: ${e.message ?? String(err)}`);
}
