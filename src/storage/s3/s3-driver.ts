import type { Readable } from 'node:stream';
import {
  type _Object,
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { FerryError } from '../../errors.ts';
import type {
  Driver,
  DriverCapabilities,
  Entry,
  ReadInto,
  ReadOptions,
  RemoveTreeOptions,
  WriteOptions,
} from '../driver.ts';
import { baseName, isWithin, joinPath, normalizePath, TEMP_PREFIX } from '../paths.ts';
import { describeError, encodeKey, failedRequest, isNotFound, toFerry } from './errors.ts';
import type { S3Settings } from './settings.ts';
import { type Target, uploadRanges, uploadStream } from './uploads.ts';

// The mount's settings come from AList's `addition`: read by `s3Settings`, kept in their own file.
export { type S3Settings, s3Settings } from './settings.ts';

/** Objects copied at once by the rename of a folder. */
const COPIES_IN_FLIGHT = 8;
/**
 * A mount's endpoint must answer its first request within this, or the mount is refused as
 * unreachable: the SDK itself would wait as long as the network lets a connection hang.
 */
const OPEN_TIMEOUT_MS = 15_000;

/**
 * An empty object that keeps an empty folder in existence (S3 has no folders). A named object
 * inside the prefix rather than a `name/` key: some S3-compatible servers mishandle keys that
 * end in a slash once other keys live below them. Listings hide it.
 */
const FOLDER_MARKER = '.ferry-folder';

/**
 * An S3 bucket (or a prefix of one). Folders are key prefixes (an empty marker object keeps an
 * empty folder). Writes are multipart uploads completed only when every byte is there and
 * aborted otherwise, so no partial object ever appears under its name. Copies inside the bucket
 * are server-side; renames are copy + delete (S3 has no rename).
 */
export class S3Driver implements Driver {
  readonly name = 'S3';
  readonly capabilities: DriverCapabilities = {
    serverSideCopy: true,
    atomicRename: false,
    // A "folder" is every key below a prefix: its rename copies each one.
    folderRename: false,
    rangeRead: true,
  };
  private readonly prefix: string;

  private constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    rootFolderPath: string,
  ) {
    const root = normalizePath(rootFolderPath || '/');
    this.prefix = root === '/' ? '' : `${root.slice(1)}/`;
  }

  /** Connect and check the bucket answers with these credentials (a clear error at mount time). */
  static async open(settings: S3Settings): Promise<S3Driver> {
    const client = new S3Client({
      region: settings.region || 'us-east-1',
      ...(settings.endpoint && { endpoint: settings.endpoint }),
      forcePathStyle: settings.forcePathStyle ?? false,
      credentials: {
        accessKeyId: settings.accessKeyId,
        secretAccessKey: settings.secretAccessKey,
        ...(settings.sessionToken && { sessionToken: settings.sessionToken }),
      },
      // Checksums only where S3 requires them: S3-compatible servers vary in what they accept.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 2,
    });
    const timeout = AbortSignal.timeout(OPEN_TIMEOUT_MS);
    try {
      await client.send(new HeadBucketCommand({ Bucket: settings.bucket }), { abortSignal: timeout });
    } catch (err) {
      client.destroy();
      const why = timeout.aborted ? `no answer within ${OPEN_TIMEOUT_MS / 1000} s` : describeError(err);
      throw new FerryError('E_STORAGE_CONFIG', `cannot use bucket ${settings.bucket}: ${why}`, {
        cause: err,
      });
    }
    return new S3Driver(client, settings.bucket, settings.rootFolderPath ?? '');
  }

  localPath(): null {
    return null;
  }

  async freeSpace(): Promise<null> {
    return null;
  }

  async stat(path: string): Promise<Entry | null> {
    const p = normalizePath(path);
    if (p === '/') return { name: '', path: '/', isDir: true, size: 0, modified: 0 };
    let headError: unknown = null;
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(p) }));
      return {
        name: baseName(p),
        path: p,
        isDir: false,
        size: Number(head.ContentLength ?? 0),
        modified: head.LastModified?.getTime() ?? 0,
      };
    } catch (err) {
      headError = err;
    }
    // Not an object: a folder when keys start with its prefix. (Some S3-compatible servers
    // answer HEAD on a "folder" key with an error other than 404; the listing decides.)
    const page = await this.call(path, () =>
      this.client.send(
        // One page of immediate children (no MaxKeys: s3rver fails on truncated pages).
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.dirKey(p), Delimiter: '/' }),
      ),
    );
    // KeyCount alone is not enough: some servers (s3rver) leave CommonPrefixes out of it.
    const children = (page.KeyCount ?? 0) + (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
    if (children > 0) return { name: baseName(p), path: p, isDir: true, size: 0, modified: 0 };
    if (isNotFound(headError)) return null;
    throw toFerry(headError, path);
  }

  async list(path: string): Promise<Entry[]> {
    const p = normalizePath(path);
    const prefix = this.dirKey(p);
    const entries = new Map<string, Entry>();
    let token: string | undefined;
    let any = false;
    do {
      const page: ListObjectsV2CommandOutput = await this.call(path, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            Delimiter: '/',
            ContinuationToken: token,
          }),
        ),
      );
      for (const common of page.CommonPrefixes ?? []) {
        const name = (common.Prefix ?? '').slice(prefix.length, -1);
        any = true;
        if (name && !name.startsWith(TEMP_PREFIX))
          entries.set(name, { name, path: joinPath(p, name), isDir: true, size: 0, modified: 0 });
      }
      for (const object of page.Contents ?? []) {
        any = true;
        const name = (object.Key ?? '').slice(prefix.length);
        if (!name || name === FOLDER_MARKER) continue; // the folder's own markers
        if (name.startsWith(TEMP_PREFIX)) continue; // another writer's work in progress
        entries.set(name, {
          name,
          path: joinPath(p, name),
          isDir: false,
          size: Number(object.Size ?? 0),
          modified: object.LastModified?.getTime() ?? 0,
        });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    if (!any) await this.mustBeFolder(p, path);
    return [...entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The files below the folder and their bytes, from one flat listing (1,000 keys a request)
   * rather than a listing per folder; hidden names are not counted, as `list` does not show them.
   */
  async measure(path: string): Promise<{ files: number; bytes: number }> {
    const p = normalizePath(path);
    let files = 0;
    let bytes = 0;
    let any = false;
    for await (const page of this.objectsUnder(path, this.dirKey(p))) {
      any ||= page.length > 0;
      for (const object of page) {
        const entry = this.visibleFile(object);
        if (entry) {
          files++;
          bytes += entry.size;
        }
      }
    }
    if (!any) await this.mustBeFolder(p, path);
    return { files, bytes };
  }

  /**
   * Every entry below the folder from one flat listing (1,000 keys a request) rather than a
   * listing per folder: a folder (from the keys' prefixes and the empty-folder markers) comes
   * before the first key below it, files as `list` shows them; hidden names and what is below
   * them are left out. Memory holds the folders met, not the files.
   */
  async *walk(path: string, signal: AbortSignal): AsyncGenerator<{ entry: Entry; rel: string }> {
    const p = normalizePath(path);
    const base = this.dirKey(p);
    const folders = new Set<string>();
    let any = false;
    for await (const page of this.objectsUnder(path, base, signal)) {
      any ||= page.length > 0;
      for (const object of page) {
        const names = (object.Key ?? '').slice(base.length).split('/');
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
    if (!any) await this.mustBeFolder(p, path);
  }

  /**
   * Remove the folder's keys page by page of one flat listing, a DeleteObjects per page, and
   * report each visible file. A folder exists while a key is below it, so one that keeps a file
   * S3 refused to delete stays, with no marker needed.
   */
  async removeTree(path: string, { signal, removed, failed }: RemoveTreeOptions): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    let any = false;
    for await (const page of this.objectsUnder(path, this.dirKey(p), signal)) {
      any ||= page.length > 0;
      signal.throwIfAborted();
      const refused = await this.deleteKeys(
        page.map((object) => object.Key as string),
        signal,
      );
      for (const object of page) {
        const entry = this.visibleFile(object);
        if (!entry) continue;
        const error = refused.get(object.Key as string);
        if (error) failed(entry.path, error);
        else removed(entry);
      }
    }
    if (!any) await this.mustBeFolder(p, path);
  }

  /** For a folder with no key below it: E_NOT_FOUND when nothing is there, E_NOT_A_DIRECTORY for a file. */
  private async mustBeFolder(p: string, path: string): Promise<void> {
    if (p === '/') return;
    const self = await this.stat(p);
    if (!self) throw new FerryError('E_NOT_FOUND', `not found: ${path}`);
    if (!self.isDir) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${path}`);
  }

  /**
   * The file an object of a flat listing is, as `list` would show it: null for a folder marker,
   * a temp name, or a key `list` cannot reach (an empty, `.` or `..` segment).
   */
  private visibleFile(object: _Object): Entry | null {
    const key = object.Key ?? '';
    if (!key.startsWith(this.prefix)) return null;
    const names = key.slice(this.prefix.length).split('/');
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

  async read(path: string, options: ReadOptions = {}): Promise<Readable> {
    const p = normalizePath(path);
    const range =
      options.start !== undefined || options.end !== undefined
        ? `bytes=${options.start ?? 0}-${options.end ?? ''}`
        : undefined;
    try {
      const object = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(p), ...(range && { Range: range }) }),
        { ...(options.signal && { abortSignal: options.signal }) },
      );
      return object.Body as Readable;
    } catch (err) {
      if (isNotFound(err) && (await this.stat(p))?.isDir)
        throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${path}`);
      throw toFerry(err, path);
    }
  }

  async write(path: string, source: Readable, options: WriteOptions = {}): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_IS_A_DIRECTORY', 'cannot write the root');
    if (!options.overwrite && (await this.stat(p)))
      throw new FerryError('E_EXISTS', `already exists: ${path}`);
    await uploadStream(this.client, this.target(p), path, source, options);
  }

  /**
   * A multipart upload whose parts are read from the source's ranges into buffers shared by all
   * uploads (see `uploadRanges`); completed only when every part is there, aborted otherwise.
   */
  async writeRanges(
    path: string,
    size: number,
    readInto: ReadInto,
    options: WriteOptions = {},
  ): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_IS_A_DIRECTORY', 'cannot write the root');
    if (size <= 0) throw new FerryError('E_INTERNAL', 'writeRanges needs a size');
    if (!options.overwrite && (await this.stat(p)))
      throw new FerryError('E_EXISTS', `already exists: ${path}`);
    await uploadRanges(this.client, this.target(p), path, size, readInto, options);
  }

  async mkdir(path: string): Promise<void> {
    const p = normalizePath(path);
    if (p === '/' || (await this.stat(p))?.isDir) return;
    await this.call(path, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: `${this.dirKey(p)}${FOLDER_MARKER}`,
          Body: '',
          ContentLength: 0,
        }),
      ),
    );
  }

  async copy(from: string, to: string, options: WriteOptions = {}): Promise<void> {
    const src = normalizePath(from);
    const dst = normalizePath(to);
    if (!options.overwrite && (await this.stat(dst)))
      throw new FerryError('E_EXISTS', `already exists: ${to}`);
    await this.call(from, () =>
      this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: this.key(dst),
          CopySource: `${this.bucket}/${encodeKey(this.key(src))}`,
        }),
      ),
    );
  }

  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const src = normalizePath(from);
    const dst = normalizePath(to);
    if (src === '/' || dst === '/') throw new FerryError('E_FORBIDDEN', 'cannot rename the root');
    if (isWithin(dst, src)) throw new FerryError('E_BAD_REQUEST', 'cannot move a folder into itself');
    const entry = await this.stat(src);
    if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${from}`);
    if (!options.overwrite && (await this.stat(dst)))
      throw new FerryError('E_EXISTS', `already exists: ${to}`);
    if (!entry.isDir) {
      await this.copy(src, dst, { overwrite: true });
      // Only the object: a folder of the same name (S3 allows both) is not part of the rename.
      await this.remove(src, { file: true });
      return;
    }
    // Every key is copied (several at a time: each is a round trip) before any is removed.
    for await (const page of this.objectsUnder(from, this.dirKey(src))) {
      let next = 0;
      let failed = false;
      const copier = async () => {
        while (next < page.length && !failed) {
          const key = page[next++]?.Key as string;
          const rest = key.slice(this.dirKey(src).length);
          await this.call(from, () =>
            this.client.send(
              new CopyObjectCommand({
                Bucket: this.bucket,
                Key: `${this.dirKey(dst)}${rest}`,
                CopySource: `${this.bucket}/${encodeKey(key)}`,
              }),
            ),
          ).catch((err: unknown) => {
            failed = true;
            throw err;
          });
        }
      };
      await Promise.all(Array.from({ length: COPIES_IN_FLIGHT }, copier));
    }
    await this.remove(src);
  }

  async remove(path: string, options: { file?: boolean } = {}): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    await this.call(path, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(p) })),
    );
    if (options.file) return;
    for await (const page of this.objectsUnder(path, this.dirKey(p))) {
      const refused = await this.deleteKeys(page.map((object) => object.Key as string));
      const [first] = refused.values();
      if (first) throw first;
    }
  }

  /**
   * One DeleteObjects of at most 1,000 keys: the error of each key S3 did not delete (a key with
   * nothing there is deleted as far as S3 goes), or of every key when the request failed. Throws
   * E_CANCELED when `signal` stopped it.
   */
  private async deleteKeys(keys: string[], signal?: AbortSignal): Promise<Map<string, Error>> {
    const refused = new Map<string, Error>();
    if (keys.length === 0) return refused;
    try {
      const out = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
        }),
        { ...(signal && { abortSignal: signal }) },
      );
      for (const error of out.Errors ?? []) {
        if (error.Key === undefined) continue;
        const path = this.pathOf(error.Key);
        refused.set(
          error.Key,
          new FerryError(
            error.Code === 'AccessDenied' ? 'E_FORBIDDEN' : 'E_BACKEND',
            `S3 did not delete ${path}: ${error.Code ?? 'error'} ${error.Message ?? ''}`.trim(),
          ),
        );
      }
    } catch (err) {
      if (signal?.aborted) throw failedRequest(err, this.pathOf(keys[0] as string), signal);
      for (const key of keys) refused.set(key, toFerry(err, this.pathOf(key)));
    }
    return refused;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** The objects below a prefix, a page (up to 1,000) at a time; `path` names it in errors. */
  private async *objectsUnder(path: string, prefix: string, signal?: AbortSignal): AsyncGenerator<_Object[]> {
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
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

  /** The driver path of an object key below the mount's prefix. */
  private pathOf(key: string): string {
    return `/${key.slice(this.prefix.length)}`;
  }

  /** The object key of a normalised path (never with a leading slash; `..` was refused). */
  private key(p: string): string {
    return `${this.prefix}${p.slice(1)}`;
  }

  private target(p: string): Target {
    return { Bucket: this.bucket, Key: this.key(p) };
  }

  private dirKey(p: string): string {
    return p === '/' ? this.prefix : `${this.key(p)}/`;
  }

  /** Run an S3 call, turning its errors into ferry's. */
  private async call<T>(path: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw toFerry(err, path);
    }
  }
}

/** A key segment `list` never shows: a temp name, or one it cannot reach (empty, `.`, `..`). */
function unlisted(name: string): boolean {
  return name === '' || name === '.' || name === '..' || name.startsWith(TEMP_PREFIX);
}
