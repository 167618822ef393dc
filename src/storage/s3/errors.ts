import { S3ServiceException } from '@aws-sdk/client-s3';
import { FerryError } from '../../errors.ts';

/** A key as `CopySource` wants it: each segment percent-encoded, the slashes kept. */
export function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export function isNotFound(err: unknown): boolean {
  return (
    err instanceof S3ServiceException &&
    (err.$metadata.httpStatusCode === 404 || err.name === 'NoSuchKey' || err.name === 'NotFound')
  );
}

/** An S3 error as a short phrase: its name and HTTP status, or the message of another error. */
export function describeError(err: unknown): string {
  if (err instanceof S3ServiceException) return `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? '?'})`;
  return err instanceof Error ? err.message : String(err);
}

/** What a failed request or read of `path` reports: `E_CANCELED` when `signal` stopped it. */
export function failedRequest(err: unknown, path: string, signal?: AbortSignal): Error {
  if (signal?.aborted) return new FerryError('E_CANCELED', 'canceled', { cause: err });
  return toFerry(err, path);
}

/** S3's answers as ferry's codes: missing → E_NOT_FOUND, refused → E_FORBIDDEN, the rest retryable. */
export function toFerry(err: unknown, path: string): Error {
  if (err instanceof FerryError) return err;
  if (isNotFound(err)) return new FerryError('E_NOT_FOUND', `not found: ${path}`, { cause: err });
  if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 403) {
    return new FerryError('E_FORBIDDEN', `S3 refused access to ${path}: ${describeError(err)}`, {
      cause: err,
    });
  }
  return new FerryError('E_BACKEND', `S3 failed on ${path}: ${describeError(err)}`, { cause: err });
}
