import { formatOf } from '../archive/index.ts';
import { isGuest, type Principal } from '../auth/roles.ts';
import type { HostPolicy, Tool } from '../download/url-policy.ts';
import { parseDownloadUrl } from '../download/url-policy.ts';
import { FerryError } from '../errors.ts';
import { baseName, checkName, isWithin, joinPath, normalizePath, relativeTo } from '../storage/paths.ts';
import { type Locate, type TaskSpec, taskSpec } from '../tasks/definitions/index.ts';
import type { DeletePolicy } from '../tasks/definitions/offline-download.ts';
import type { FileService } from './file-service.ts';

/** How many sources are checked at once before any task of a request exists. */
const CHECK_CONCURRENCY = 16;

/**
 * One copy or move: an item (the caller's path) into a folder (the caller's path); `overwrite`
 * and `keepBoth`, when given, replace the request's for this item (efile's per-item policy).
 */
export interface TransferItem {
  src: unknown;
  dstDir: unknown;
  overwrite?: boolean;
  keepBoth?: boolean;
}

export interface TransferOptions {
  overwrite: boolean;
  skipExisting: boolean;
  /** When the destination name is taken, copy under a free one (efile's `both`). */
  keepBoth: boolean;
  /**
   * Refuse what would fail in the task, before any task exists (efile): an existing destination
   * without a conflict policy is `E_EXISTS`, a file larger than the free space `E_NO_SPACE`.
   */
  strict?: boolean;
  /** Refuse a destination that is a file (`E_NOT_A_DIRECTORY`), as AList does. */
  dstMustBeFolder?: boolean;
}

export interface DecompressRequest {
  /** The caller's folder holding the archives. */
  srcDir: unknown;
  names: readonly unknown[];
  /** The caller's destination folder. */
  dstDir: unknown;
  password: string;
  innerPath: unknown;
  putIntoNewDir: boolean;
  overwrite: boolean;
}

/**
 * Requests that become tasks, checked against the files before any task exists: every source of
 * a request is looked at first, and one bad item refuses the whole request. Each answer is the
 * tasks to create (named and typed by their kinds' definitions); the caller hands them to the task
 * service. Permissions, base paths and traversal are checked here, as in `FileService`.
 */
export class TaskRequests {
  private readonly locate: Locate;

  constructor(
    private readonly files: FileService,
    private readonly hosts: HostPolicy,
  ) {
    this.locate = (path) => files.mounts.resolve(path);
  }

  /** `E_NOT_A_DIRECTORY` when the caller's `userPath` is a file (a missing folder is made by the task). */
  private async requireFolder(principal: Principal, userPath: unknown, label: string): Promise<string> {
    const path = this.files.pathOf(principal, userPath);
    const r = this.files.mounts.resolve(path);
    const entry = await r.driver.stat(r.path);
    if (entry && !entry.isDir) throw new FerryError('E_NOT_A_DIRECTORY', `${label} is not a folder`);
    return path;
  }

  /**
   * Copy or move tasks, one per item. Needs COPY or MOVE. `E_NOT_FOUND` for a missing source,
   * `E_SAME_PATH` when an item would land on itself (unless keeping both), `E_BAD_REQUEST` for a
   * folder into itself, `E_FORBIDDEN` for a storage root.
   */
  async transfers(
    principal: Principal,
    kind: 'copy' | 'move',
    items: readonly TransferItem[],
    options: TransferOptions,
  ): Promise<TaskSpec[]> {
    this.files.require(principal, kind === 'copy' ? 'COPY' : 'MOVE');
    if (options.dstMustBeFolder)
      for (const dstDir of new Set(items.map((i) => i.dstDir)))
        await this.requireFolder(principal, dstDir, 'dst_dir');
    return mapLimit(items, CHECK_CONCURRENCY, (item) =>
      this.transfer(principal, kind, item, {
        ...options,
        overwrite: item.overwrite ?? options.overwrite,
        keepBoth: item.keepBoth ?? options.keepBoth,
      }),
    );
  }

  private async transfer(
    principal: Principal,
    kind: 'copy' | 'move',
    item: TransferItem,
    options: TransferOptions,
  ): Promise<TaskSpec> {
    const srcPath = this.files.pathOf(principal, item.src);
    const dstDir = this.files.pathOf(principal, item.dstDir);
    const src = this.files.mounts.resolve(srcPath);
    const dst = this.files.mounts.resolve(dstDir);
    const target = joinPath(dstDir, baseName(srcPath));
    if (src.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be copied or moved');
    if (target === srcPath && !(options.keepBoth && kind === 'copy'))
      throw new FerryError('E_SAME_PATH', 'source and destination are the same');
    if (target !== srcPath && isWithin(target, srcPath))
      throw new FerryError('E_BAD_REQUEST', 'cannot copy a folder into itself');
    const entry = await src.driver.stat(src.path);
    if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${relativeTo(srcPath, principal.basePath)}`);
    if (options.strict) {
      const existing = await dst.driver.stat(joinPath(dst.path, baseName(srcPath)));
      if (existing && !options.overwrite && !options.keepBoth && !options.skipExisting)
        throw new FerryError('E_EXISTS', `already exists: ${relativeTo(target, principal.basePath)}`);
      const free = entry.isDir ? null : await dst.driver.freeSpace(dst.path).catch(() => null);
      if (free !== null && entry.size > free)
        throw new FerryError('E_NO_SPACE', 'not enough free space at the destination');
    }
    const payload = {
      src: srcPath,
      dstDir,
      overwrite: options.overwrite,
      skipExisting: options.skipExisting,
      keepBoth: options.keepBoth,
    };
    return taskSpec(kind, payload, this.locate);
  }

  /**
   * Delete tasks, one per path (the caller's). Needs REMOVE; a storage root is refused. With
   * `mustExist` a missing item is `E_NOT_FOUND` before any task exists.
   */
  async deletes(
    principal: Principal,
    userPaths: readonly unknown[],
    options: { mustExist?: boolean } = {},
  ): Promise<TaskSpec[]> {
    this.files.require(principal, 'REMOVE');
    return mapLimit(userPaths, CHECK_CONCURRENCY, async (userPath) => {
      const path = this.files.pathOf(principal, userPath);
      if (options.mustExist && baseName(path) === '')
        throw new FerryError('E_NOT_FOUND', `not found: ${relativeTo(path, principal.basePath)}`);
      const r = this.files.mounts.resolve(path);
      if (r.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be deleted');
      if (options.mustExist && !(await r.driver.stat(r.path)))
        throw new FerryError('E_NOT_FOUND', `not found: ${relativeTo(path, principal.basePath)}`);
      return taskSpec('delete', { path }, this.locate);
    });
  }

  /**
   * Decompress tasks, one per archive. Needs DECOMPRESS. `E_NOT_FOUND` for a missing archive,
   * `E_IS_A_DIRECTORY` for a folder, `E_ARCHIVE_FORMAT` for a name ferry cannot read.
   */
  async decompress(principal: Principal, req: DecompressRequest): Promise<TaskSpec[]> {
    this.files.require(principal, 'DECOMPRESS');
    const srcDir = this.files.pathOf(principal, req.srcDir);
    const dstDir = await this.requireFolder(principal, req.dstDir, 'dst_dir');
    const innerPath = normalizePath(req.innerPath ?? '/');
    return mapLimit(req.names.map(checkName), CHECK_CONCURRENCY, async (name) => {
      const srcPath = joinPath(srcDir, name);
      const src = this.files.mounts.resolve(srcPath);
      const entry = await src.driver.stat(src.path);
      if (!entry)
        throw new FerryError('E_NOT_FOUND', `not found: ${relativeTo(srcPath, principal.basePath)}`);
      if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', `not an archive but a folder: ${name}`);
      if (!formatOf(baseName(src.path)))
        throw new FerryError('E_ARCHIVE_FORMAT', `not an archive ferry can read: ${baseName(src.path)}`);
      return taskSpec(
        'decompress',
        {
          src: srcPath,
          dstDir,
          password: req.password,
          innerPath,
          putIntoNewDir: req.putIntoNewDir,
          overwrite: req.overwrite,
        },
        this.locate,
        { totalBytes: 0 },
      );
    });
  }

  /**
   * Check an upload to the caller's `userPath` before a byte is read: guests and callers without
   * WRITE are refused, nothing mounted there is `E_NO_STORAGE`, a folder of that name
   * `E_IS_A_DIRECTORY`, an existing file without `overwrite` `E_EXISTS`. Gives the virtual path
   * and how to describe the task once the body is spooled.
   */
  async upload(
    principal: Principal,
    userPath: unknown,
    options: { overwrite: boolean; modified: number | undefined },
  ): Promise<{ path: string; spec(id: string, size: number): TaskSpec }> {
    if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
    this.files.require(principal, 'WRITE');
    const path = this.files.pathOf(principal, userPath);
    if (baseName(path) === '') throw new FerryError('E_BAD_REQUEST', 'File-Path must name a file');
    const dst = this.files.mounts.resolve(path);
    // stat() also checks the destination stays inside its storage.
    const existing = await dst.driver.stat(dst.path);
    if (existing?.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'a folder has that name');
    if (existing && !options.overwrite) throw new FerryError('E_EXISTS', 'file exists');
    const payload = {
      dst: path,
      overwrite: options.overwrite,
      ...(options.modified !== undefined && { modified: options.modified }),
    };
    return {
      path,
      spec: (id, size) => taskSpec('upload', payload, () => dst, { id, totalBytes: size, totalFiles: 1 }),
    };
  }

  /**
   * Offline download tasks, one per URL, into the caller's folder. Guests hear they are guests
   * first; then OFFLINE_DOWNLOAD is needed. Every URL is checked before any task exists: scheme,
   * the tool's protocols, and hosts denied by name or literal address.
   */
  async offlineDownloads(
    principal: Principal,
    req: { urls: readonly unknown[]; dstDir: unknown; tool: Tool; deletePolicy: DeletePolicy },
  ): Promise<TaskSpec[]> {
    if (isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
    this.files.require(principal, 'OFFLINE_DOWNLOAD');
    // Only SimpleHttp can hand the body to the destination as it arrives; aria2 writes files of
    // its own into the data dir, so a stream is refused before any task exists.
    if (req.deletePolicy === 'upload_download_stream' && req.tool !== 'SimpleHttp')
      throw new FerryError(
        'E_BAD_REQUEST',
        `delete_policy upload_download_stream works with the SimpleHttp tool only; ${req.tool} downloads into ferry's data directory first, so choose another delete_policy for it`,
      );
    const dstDir = await this.requireFolder(principal, req.dstDir ?? '/', 'path');
    return req.urls.map((raw) => {
      const url = parseDownloadUrl(raw, req.tool);
      if (url.protocol !== 'magnet:') this.hosts.checkName(url.hostname);
      return taskSpec(
        'offline_download',
        { url: url.href, dstDir, tool: req.tool, deletePolicy: req.deletePolicy },
        this.locate,
      );
    });
  }
}

/** `Promise.all` over `items` with at most `limit` calls in flight; results keep their order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
