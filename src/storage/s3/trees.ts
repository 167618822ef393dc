import {
  type _Object,
  CopyObjectCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { FerryError } from '../../errors.ts';
import type { Entry, RemoveTreeOptions } from '../driver.ts';
import { joinPath, normalizePath, TEMP_PREFIX } from '../paths.ts';
import { encodeKey, failedRequest, toFerry } from './errors.ts';

/*
 * Whole folders from one flat listing of the keys below their prefix (1,000 keys a request)
 * rather than a listing per folder: measuring, walking, copying and deleting a folder's keys.
 * `path` in every signature names the folder in errors; `dir` (and `from`, `to`) is a folder's
 * key prefix: the mount's prefix for the root, else the folder's key and a slash. `measureTree`,
 * `walkTree` and `deleteTree` report whether any key was below `dir`: when none was, only the
 * driver can tell an empty folder from a missing one or a file.
 */

/** The keys a driver sees: its client, its bucket, and the key prefix of its root ('' or ending in `/`). */
export interface Scope {
  client: S3Client;
  bucket: string;
  prefix: string;
}

/** Objects copied at once by the rename of a folder. */
const COPIES_IN_FLIGHT = 8;

/**
 * An empty object that keeps an empty folder in existence (S3 has no folders). A named object
 * inside the prefix rather than a `name/` key: some S3-compatible servers mishandle keys that
 * end in a slash once other keys live below them. Listings hide it.
 */
export const FOLDER_MARKER = '.ferry-folder';

/**
 * The files below the folder and their bytes, from one flat listing (1,000 keys a request)
 * rather than a listing per folder; hidden names are not counted, as `list` does not show them.
 * Null when no key is below `dir`.
 */
export async function measureTree(
  scope: Scope,
  path: string,
  dir: string,
): Promise<{ files: number; bytes: number } | null> {
  let files = 0;
  let bytes = 0;
  let any = false;
  for await (const page of objectsUnder(scope, path, dir)) {
    any ||= page.length > 0;
    for (const object of page) {
      const entry = visibleFile(scope.prefix, object);
      if (entry) {
        files++;
        bytes += entry.size;
      }
    }
  }
  return any ? { files, bytes } : null;
}

/**
 * Every entry below the folder from one flat listing (1,000 keys a request) rather than a
 * listing per folder: a folder (from the keys' prefixes and the empty-folder markers) comes
 * before the first key below it, files as `list` shows them; hidden names and what is below
 * them are left out. Memory holds the folders met, not the files. Returns whether any key was
 * below `dir`.
 */
export async function* walkTree(
  scope: Scope,
  path: string,
  dir: string,
  signal: AbortSignal,
): AsyncGenerator<{ entry: Entry; rel: string }, boolean> {
  const p = normalizePath(path);
  const folders = new Set<string>();
  let any = false;
  for await (const page of objectsUnder(scope, path, dir, signal)) {
    any ||= page.length > 0;
    for (const object of page) {
      const names = (object.Key ?? '').slice(dir.length).split('/');
      let rel = '';
      for (const [i, name] of names.entries()) {
        if (unlisted(name)) break;
        rel = `${rel}/${name}`;
        const last = i === names.length - 1;
        if (last && name !== FOLDER_MARKER) {
          const entry = { name, path: joinPath(p, rel), isDir: false, size: Number(object.Size ?? 0) };
          yield { rel, entry: { ...entry, modified: object.LastModified?.getTime() ?? 0 } };
        } else if (!last && !folders.has(rel)) {
          folders.add(rel);
          yield { rel, entry: { name, path: joinPath(p, rel), isDir: true, size: 0, modified: 0 } };
        }
      }
    }
  }
  return any;
}

/**
 * Remove the folder's keys page by page of one flat listing, a DeleteObjects per page, and
 * report each visible file. A folder exists while a key is below it, so one that keeps a file
 * S3 refused to delete stays, with no marker needed. Returns whether any key was below `dir`.
 */
export async function deleteTree(
  scope: Scope,
  path: string,
  dir: string,
  { signal, removed, failed }: RemoveTreeOptions,
): Promise<boolean> {
  let any = false;
  for await (const page of objectsUnder(scope, path, dir, signal)) {
    any ||= page.length > 0;
    signal.throwIfAborted();
    const refused = await deleteKeys(
      scope,
      page.map((object) => object.Key as string),
      signal,
    );
    for (const object of page) {
      const entry = visibleFile(scope.prefix, object);
      if (!entry) continue;
      const error = refused.get(object.Key as string);
      if (error) failed(entry.path, error);
      else removed(entry);
    }
  }
  return any;
}

/**
 * Copy every key below `from` to the same name below `to`, server-side, several at a time
 * (each is a round trip); the first failure stops the copy. Nothing is removed.
 */
export async function copyTree(scope: Scope, path: string, from: string, to: string): Promise<void> {
  for await (const page of objectsUnder(scope, path, from)) {
    let next = 0;
    let failed = false;
    const copier = async () => {
      while (next < page.length && !failed) {
        const key = page[next++]?.Key as string;
        const rest = key.slice(from.length);
        await scope.client
          .send(
            new CopyObjectCommand({
              Bucket: scope.bucket,
              Key: `${to}${rest}`,
              CopySource: `${scope.bucket}/${encodeKey(key)}`,
            }),
          )
          .catch((err: unknown) => {
            failed = true;
            throw toFerry(err, path);
          });
      }
    };
    await Promise.all(Array.from({ length: COPIES_IN_FLIGHT }, copier));
  }
}

/**
 * One DeleteObjects of at most 1,000 keys: the error of each key S3 did not delete (a key with
 * nothing there is deleted as far as S3 goes), or of every key when the request failed. Throws
 * E_CANCELED when `signal` stopped it.
 */
export async function deleteKeys(
  scope: Scope,
  keys: string[],
  signal?: AbortSignal,
): Promise<Map<string, Error>> {
  const refused = new Map<string, Error>();
  if (keys.length === 0) return refused;
  try {
    const out = await scope.client.send(
      new DeleteObjectsCommand({
        Bucket: scope.bucket,
        Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
      }),
      { ...(signal && { abortSignal: signal }) },
    );
    for (const error of out.Errors ?? []) {
      if (error.Key === undefined) continue;
      const path = pathOf(scope.prefix, error.Key);
      refused.set(
        error.Key,
        new FerryError(
          error.Code === 'AccessDenied' ? 'E_FORBIDDEN' : 'E_BACKEND',
          `S3 did not delete ${path}: ${error.Code ?? 'error'} ${error.Message ?? ''}`.trim(),
        ),
      );
    }
  } catch (err) {
    if (signal?.aborted) throw failedRequest(err, pathOf(scope.prefix, keys[0] as string), signal);
    for (const key of keys) refused.set(key, toFerry(err, pathOf(scope.prefix, key)));
  }
  return refused;
}

/** The objects below a prefix, a page (up to 1,000) at a time; `path` names it in errors. */
export async function* objectsUnder(
  scope: Scope,
  path: string,
  prefix: string,
  signal?: AbortSignal,
): AsyncGenerator<_Object[]> {
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await scope.client.send(
        new ListObjectsV2Command({ Bucket: scope.bucket, Prefix: prefix, ContinuationToken: token }),
        { ...(signal && { abortSignal: signal }) },
      );
    } catch (err) {
      throw failedRequest(err, path, signal);
    }
    const objects = (page.Contents ?? []).filter((object) => object.Key);
    if (objects.length > 0) yield objects;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/**
 * The file an object of a flat listing is, as `list` would show it: null for a folder marker,
 * a temp name, or a key `list` cannot reach (an empty, `.` or `..` segment). `prefix` is the
 * mount's.
 */
function visibleFile(prefix: string, object: _Object): Entry | null {
  const key = object.Key ?? '';
  if (!key.startsWith(prefix)) return null;
  const names = key.slice(prefix.length).split('/');
  const name = names[names.length - 1] as string;
  if (name === FOLDER_MARKER) return null;
  if (names.some(unlisted)) return null;
  return {
    name,
    path: `/${names.join('/')}`,
    isDir: false,
    size: Number(object.Size ?? 0),
    modified: object.LastModified?.getTime() ?? 0,
  };
}

/** The driver path of an object key below the mount's prefix. */
function pathOf(prefix: string, key: string): string {
  return `/${key.slice(prefix.length)}`;
}

/** A key segment `list` never shows: a temp name, or one it cannot reach (empty, `.`, `..`). */
function unlisted(name: string): boolean {
  return name === '' || name === '.' || name === '..' || name.startsWith(TEMP_PREFIX);
}
