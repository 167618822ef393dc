import { hash, randomBytes } from 'node:crypto';
import { FerryError } from '../errors.ts';

const MAX_PATH_LENGTH = 4096;
const MAX_NAME_BYTES = 255;
/**
 * In a path starting with `/`, whatever may need `normalizePath`'s full work: an empty, `.` or `..`
 * segment (`//`, `/./`, `/../`, a trailing `/`, `/.`, `/..`), a NUL byte, or a name of over 85
 * characters (which could be over 255 bytes in UTF-8).
 */
const NOT_PLAINLY_NORMAL = /\/\.{0,2}(?:\/|$)|\0|[^/]{86}/;

/**
 * Normalise a slash-separated virtual path: collapse repeated slashes and `.` segments, always
 * start with `/`, never end with one (except the root itself). A `..` segment is refused rather
 * than resolved, so no spelling of a path can climb out of the folder it is joined to.
 * Throws `E_INVALID_PATH` (not a string, NUL byte, too long) or `E_PATH_OUTSIDE_ROOT` (`..`).
 */
export function normalizePath(input: unknown): string {
  if (typeof input !== 'string') throw new FerryError('E_INVALID_PATH', 'path must be a string');
  if (input.length > MAX_PATH_LENGTH) throw new FerryError('E_INVALID_PATH', 'path is too long');
  // Most paths are normal already (joined from normal parts and listed names): one scan says so.
  if (input.charCodeAt(0) === 0x2f && !NOT_PLAINLY_NORMAL.test(input)) return input;
  if (input.includes('\0')) throw new FerryError('E_INVALID_PATH', 'path contains a NUL byte');
  const segments: string[] = [];
  for (const segment of input.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') throw new FerryError('E_PATH_OUTSIDE_ROOT', `path may not contain '..': ${input}`);
    if (Buffer.byteLength(segment) > MAX_NAME_BYTES)
      throw new FerryError('E_INVALID_PATH', 'a name is too long');
    segments.push(segment);
  }
  return `/${segments.join('/')}`;
}

/**
 * Check a single file or folder name (as in `names[]` of copy/move/remove): it may not be empty,
 * `.`/`..`, or contain `/` or NUL. Returns the name unchanged.
 */
export function checkName(input: unknown): string {
  if (typeof input !== 'string' || input === '')
    throw new FerryError('E_INVALID_PATH', 'a name must be a non-empty string');
  if (input === '.' || input === '..' || input.includes('/') || input.includes('\0')) {
    throw new FerryError('E_PATH_OUTSIDE_ROOT', `not a plain name: ${JSON.stringify(input)}`);
  }
  if (Buffer.byteLength(input) > MAX_NAME_BYTES) throw new FerryError('E_INVALID_PATH', 'name is too long');
  return input;
}

/** Join normalised paths and names; the result is normalised again (so `..` in any part throws). */
export function joinPath(...parts: string[]): string {
  return normalizePath(parts.join('/'));
}

/** The parent folder of a normalised path (`/` for `/` and for top-level entries). */
export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** The last segment of a normalised path (`''` for `/`). */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** True when `path` is `ancestor` or lies below it (both normalised). */
export function isWithin(path: string, ancestor: string): boolean {
  if (ancestor === '/') return true;
  return path === ancestor || path.startsWith(`${ancestor}/`);
}

/** `path` relative to `ancestor`, as a normalised path (`/` when equal). Caller checks `isWithin`. */
export function relativeTo(path: string, ancestor: string): string {
  if (ancestor === '/') return path;
  return path === ancestor ? '/' : path.slice(ancestor.length);
}

/** A temporary sibling of `path` for atomic writes: hidden, unique per token, recognisable for clean-up. */
export function tempSiblingPath(path: string, token: string): string {
  const parent = parentPath(path);
  return `${parent === '/' ? '' : parent}/${TEMP_PREFIX}${token}`;
}

/**
 * The token of a temp name: stable for (`key`, `path`) when a key is given, so a write retried
 * after a crash reuses — and so replaces — the temp file its interrupted attempt left; random
 * otherwise.
 */
export function tempToken(path: string, key?: string): string {
  if (!key) return randomBytes(8).toString('hex');
  return hash('sha256', `${key}\0${path}`).slice(0, 24);
}

/** Where a write of `path` keyed by `key` puts its bytes first: its temp sibling named by `tempToken`. */
export function tempPathFor(path: string, key?: string): string {
  return tempSiblingPath(path, tempToken(path, key));
}

/** Names starting with this are ferry's unfinished writes; listings hide them. */
export const TEMP_PREFIX = '.ferry-tmp-';
