/**
 * How the WebDAV driver's failures become FerryErrors: HTTP statuses, cancels and unreachable
 * servers of a request (`requestFailure`), and what `WebDavDriver.open` reports (`openFailure`).
 */
import { FerryError } from '../../errors.ts';
import type { WebDavSettings } from './settings.ts';

/** A thrown value as a FerryError: HTTP status, cancel, or an unreachable server at `address`. */
export function requestFailure(
  err: unknown,
  what: string,
  address: string,
  signal?: AbortSignal,
): FerryError {
  if (signal?.aborted) return new FerryError('E_CANCELED', 'canceled', { cause: err });
  if (err instanceof FerryError) return err;
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number') {
    // A fresh cause: the library's error carries the whole response object.
    const cause = Object.assign(new Error(`HTTP ${status}`), { status });
    const fail = (code: ConstructorParameters<typeof FerryError>[0], message: string) =>
      new FerryError(code, `${message}: ${what}`, { cause });
    if (status === 404 || status === 410) return fail('E_NOT_FOUND', 'not found');
    // 409: an intermediate folder is missing (RFC 4918 §9.7.1).
    if (status === 409) return fail('E_NOT_FOUND', 'parent folder not found');
    if (status === 412) return fail('E_EXISTS', 'already exists');
    if (status === 401) return fail('E_STORAGE_CONFIG', 'WebDAV server refused the username or password');
    if (status === 403) return fail('E_FORBIDDEN', 'WebDAV server refused');
    if (status === 507) return fail('E_NO_SPACE', 'WebDAV server is out of space');
    return fail('E_BACKEND', `WebDAV server answered HTTP ${status}`);
  }
  return new FerryError('E_BACKEND', `WebDAV server at ${address} failed on ${what}: ${reason(err)}`, {
    cause: err,
  });
}

/** The HTTP status behind a request's failure (see `requestFailure`), if the server answered at all. */
export function httpStatus(err: unknown): number | undefined {
  if (!(err instanceof FerryError)) return undefined;
  const status = (err.cause as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' ? status : undefined;
}

/**
 * Why `open` failed, as E_STORAGE_CONFIG: `signal` is the open's timeout of `timeoutMs`, so an
 * aborted one means the server did not answer in time.
 */
export function openFailure(
  err: unknown,
  settings: WebDavSettings,
  signal: AbortSignal,
  timeoutMs: number,
): FerryError {
  const at = `the WebDAV server at ${settings.address}`;
  const config = (message: string) => new FerryError('E_STORAGE_CONFIG', message, { cause: err });
  if (signal.aborted) return config(`${at} did not answer within ${timeoutMs / 1000} s`);
  const status = httpStatus(err);
  if (status === 401) return config('WebDAV server refused the username or password');
  if (!(err instanceof FerryError)) return config(`cannot reach ${at}: ${reason(err)}`);
  if (err.code === 'E_BACKEND' && status === undefined)
    return config(`cannot reach ${at}: ${reason(err.cause)}`);
  return config(`cannot use ${settings.rootFolderPath} on ${at}: ${err.message}`);
}

/** The short reason of a network error: its errno code when it has one. */
function reason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && e.code !== '') return e.code;
  return typeof e?.message === 'string' ? e.message : String(err);
}
