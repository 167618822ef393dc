/**
 * Every error ferry raises on purpose is a FerryError with a stable code. Each HTTP dialect maps
 * codes to its own envelope (see `src/api/<dialect>/`); the engine maps them to task outcomes
 * (`unrecoverable` errors fail a task at once, anything else is retried with backoff).
 */
export const ERROR_CODES = {
  E_BAD_REQUEST: {
    http: 400,
    unrecoverable: true,
    meaning: 'the request is malformed or has invalid values',
  },
  E_UNAUTHORIZED: { http: 401, unrecoverable: true, meaning: 'no valid token' },
  E_GUEST: { http: 403, unrecoverable: true, meaning: 'guests may not act on tasks' },
  E_FORBIDDEN: { http: 403, unrecoverable: true, meaning: 'the user lacks the permission' },
  E_TASK_NOT_FOUND: { http: 404, unrecoverable: true, meaning: 'no such task visible to the caller' },
  E_JOB_NOT_FOUND: { http: 404, unrecoverable: true, meaning: 'no such job visible to the caller' },
  E_SYNC_REFUSED: {
    http: 409,
    unrecoverable: true,
    meaning:
      'a sync would likely lose data (source unreadable, or empty while the destination is not, or more deletes than max_delete)',
  },
  E_TASK_STATE: { http: 400, unrecoverable: true, meaning: 'the task is not in a state that allows this' },
  E_NOT_FOUND: { http: 404, unrecoverable: true, meaning: 'the file or folder does not exist' },
  E_EXISTS: { http: 403, unrecoverable: true, meaning: 'the destination already exists' },
  E_SAME_PATH: { http: 403, unrecoverable: true, meaning: 'source and destination are the same' },
  E_NOT_A_DIRECTORY: { http: 400, unrecoverable: true, meaning: 'a folder was expected' },
  E_IS_A_DIRECTORY: { http: 400, unrecoverable: true, meaning: 'a file was expected' },
  E_PATH_OUTSIDE_ROOT: { http: 403, unrecoverable: true, meaning: 'the path leaves its mount root' },
  E_INVALID_PATH: { http: 400, unrecoverable: true, meaning: 'the path is not acceptable' },
  E_NO_STORAGE: { http: 404, unrecoverable: true, meaning: 'no storage is mounted at that path' },
  E_STORAGE_CONFIG: { http: 400, unrecoverable: true, meaning: 'a storage mount is misconfigured' },
  E_NO_SPACE: { http: 507, unrecoverable: false, meaning: 'the destination is out of space' },
  E_VERIFY_FAILED: { http: 500, unrecoverable: false, meaning: 'the copied data did not match its source' },
  E_REMOTE_REFUSED: {
    http: 502,
    unrecoverable: true,
    meaning:
      'a remote server refused a download for good (4xx other than 408/429, too many redirects, a refused login), or a torrent no peer serves',
  },
  E_BACKEND: { http: 502, unrecoverable: false, meaning: 'a storage backend failed; worth retrying' },
  E_ARCHIVE_PASSWORD: {
    // AList answers a missing or wrong archive password with code 202 in archive endpoints.
    http: 202,
    unrecoverable: true,
    meaning: 'the archive needs a password, or the one given is wrong',
  },
  E_ARCHIVE_UNSAFE: {
    http: 403,
    unrecoverable: true,
    meaning: 'an archive entry would land outside the destination (zip-slip, absolute path, escaping link)',
  },
  E_ARCHIVE_LIMIT: {
    http: 413,
    unrecoverable: true,
    meaning: 'extraction passed a configured limit (bytes, entries, compression ratio): a zip bomb?',
  },
  E_ARCHIVE_FORMAT: {
    http: 415,
    unrecoverable: true,
    meaning: 'not an archive ferry can read, or a damaged or truncated one',
  },
  E_TOOL_MISSING: {
    http: 501,
    unrecoverable: true,
    meaning: 'a system program this format needs is not installed',
  },
  E_WEBHOOK_NOT_FOUND: { http: 404, unrecoverable: true, meaning: 'no such webhook or delivery' },
  E_CANCELED: { http: 499, unrecoverable: true, meaning: 'the task was canceled' },
  E_INTERRUPTED: {
    http: 500,
    unrecoverable: true,
    meaning: 'the server stopped while running the task too many times: a task that crashes it?',
  },
  E_INTERNAL: { http: 500, unrecoverable: false, meaning: 'an unexpected internal error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class FerryError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FerryError';
    this.code = code;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  /** An unrecoverable error fails a task at once; retrying would give the same answer. */
  get unrecoverable(): boolean {
    return ERROR_CODES[this.code].unrecoverable;
  }
}

export function isFerryError(err: unknown, code?: ErrorCode): err is FerryError {
  return err instanceof FerryError && (code === undefined || err.code === code);
}

/** Whatever was thrown, give back an Error (strings, objects and null become one). */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : `non-error thrown: ${safeString(thrown)}`);
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Map Node's file-system errno codes to ferry codes, keeping the original as `cause`. */
export function fromFsError(err: unknown, path: string): Error {
  const e = coerceError(err) as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOENT':
      return new FerryError('E_NOT_FOUND', `not found: ${path}`, { cause: e });
    case 'EEXIST':
    case 'ENOTEMPTY':
      return new FerryError('E_EXISTS', `already exists: ${path}`, { cause: e });
    case 'ENOTDIR':
      return new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${path}`, { cause: e });
    case 'EISDIR':
      return new FerryError('E_IS_A_DIRECTORY', `is a folder: ${path}`, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new FerryError('E_NO_SPACE', `out of space writing ${path}`, { cause: e });
    case 'EACCES':
    case 'EPERM':
      return new FerryError('E_FORBIDDEN', `permission denied: ${path}`, { cause: e });
    case 'ABORT_ERR':
      return new FerryError('E_CANCELED', 'canceled', { cause: e });
    default:
      return e;
  }
}
