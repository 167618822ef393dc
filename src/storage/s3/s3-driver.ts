import type { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
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
import { describeError, encodeKey, isNotFound, toFerry } from './errors.ts';
import type { S3Settings } from './settings.ts';
import {
  copyTree,
  deleteKeys,
  deleteTree,
  FOLDER_MARKER,
  measureTree,
  objectsUnder,
  type Scope,
  walkTree,
} from './trees.ts';
import { type Target, uploadRanges, uploadStream } from './uploads.ts';

// The mount's settings come from AList's `addition`: read by `s3Settings`, kept in their own file.
export { type S3Settings, s3Settings } from './settings.ts';

/**
 * A mount's endpoint must answer its first request within this, or the mount is refused as
 * unreachable: the SDK itself would wait as long as the network lets a connection hang.
 */
const OPEN_TIMEOUT_MS = 15_000;

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
  /** The client, bucket and prefix together, as the folder-wide operations of `trees.ts` take them. */
  private readonly scope: Scope;

  private constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    rootFolderPath: string,
  ) {
    const root = normalizePath(rootFolderPath || '/');
    this.prefix = root === '/' ? '' : `${root.slice(1)}/`;
    this.scope = { client, bucket, prefix: this.prefix };
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

  /** The files below the folder and their bytes, hidden names not counted: see `measureTree`. */
  async measure(path: string): Promise<{ files: number; bytes: number }> {
    const p = normalizePath(path);
    const size = await measureTree(this.scope, path, this.dirKey(p));
    if (size) return size;
    await this.mustBeFolder(p, path);
    return { files: 0, bytes: 0 };
  }

  /** Every entry below the folder, each folder before what is below it, hidden names left out: see `walkTree`. */
  async *walk(path: string, signal: AbortSignal): AsyncGenerator<{ entry: Entry; rel: string }> {
    const p = normalizePath(path);
    const any = yield* walkTree(this.scope, path, this.dirKey(p), signal);
    if (!any) await this.mustBeFolder(p, path);
  }

  /** Remove every key below the folder, reporting each visible file removed or refused: see `deleteTree`. */
  async removeTree(path: string, options: RemoveTreeOptions): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    const any = await deleteTree(this.scope, path, this.dirKey(p), options);
    if (!any) await this.mustBeFolder(p, path);
  }

  /** For a folder with no key below it: E_NOT_FOUND when nothing is there, E_NOT_A_DIRECTORY for a file. */
  private async mustBeFolder(p: string, path: string): Promise<void> {
    if (p === '/') return;
    const self = await this.stat(p);
    if (!self) throw new FerryError('E_NOT_FOUND', `not found: ${path}`);
    if (!self.isDir) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${path}`);
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
    // The one CopyObject is what places the object.
    await options.beforePlace?.();
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
    await copyTree(this.scope, from, this.dirKey(src), this.dirKey(dst));
    await this.remove(src);
  }

  async remove(path: string, options: { file?: boolean } = {}): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    await this.call(path, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(p) })),
    );
    if (options.file) return;
    for await (const page of objectsUnder(this.scope, path, this.dirKey(p))) {
      const refused = await deleteKeys(
        this.scope,
        page.map((object) => object.Key as string),
      );
      const [first] = refused.values();
      if (first) throw first;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
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
