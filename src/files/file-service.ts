import type { Readable } from 'node:stream';
import type { ArchiveListing } from '../archive/formats.ts';
import { formatOf } from '../archive/index.ts';
import type { LinkSigner } from '../auth/link-signer.ts';
import { can, isAdmin, type Permission, type Principal } from '../auth/roles.ts';
import { FerryError, isFerryError } from '../errors.ts';
import { DataArea } from '../storage/data-area.ts';
import type { Entry } from '../storage/driver.ts';
import { listArchiveAt } from '../storage/extraction.ts';
import type { MountRegistry, Resolved } from '../storage/mounts.ts';
import { baseName, checkName, isWithin, joinPath, normalizePath, parentPath } from '../storage/paths.ts';
import { childPath, toVirtual } from './user-path.ts';

/** What a listing needs of a file or folder (a driver entry, or a folder only mounts make). */
export interface FileFacts {
  name: string;
  isDir: boolean;
  size: number;
  modified: number;
}

/** A folder's entries: its own (when a storage holds it) and the folders leading to mounts below it. */
export interface Folder {
  /** The folder's virtual path. */
  path: string;
  entries: FileFacts[];
  /** The driver of the storage holding the folder; `unknown` for a folder only mounts make. */
  provider: string;
}

/** One object found by `get`. */
export interface Found {
  /** The object's virtual path. */
  path: string;
  facts: FileFacts;
  provider: string;
  /** Where a storage holds it; absent for a folder only mounts make. */
  resolved?: Resolved;
}

/** A file ready to be read by a download. */
export interface Download {
  name: string;
  entry: Entry;
  read(range: { start: number; end: number; signal: AbortSignal }): Promise<Readable>;
}

const notFound = () => new FerryError('E_NOT_FOUND', 'object not found');

/**
 * The one way the HTTP dialects reach files: list, get, mkdir, rename, download, archive
 * listings, and the checks of requests that become tasks (`task-requests.ts`). Every method takes
 * the caller and a path as the caller names it (below its base path); the base path, traversal
 * and permission checks happen here, so no dialect can forget one.
 */
export class FileService {
  constructor(
    readonly mounts: MountRegistry,
    private readonly links: LinkSigner,
    private readonly dataDir: string,
  ) {}

  /** The caller's path as a virtual path (below its base path); traversal is `E_PATH_OUTSIDE_ROOT`. */
  pathOf(principal: Principal, userPath: unknown): string {
    return toVirtual(principal, userPath);
  }

  /** `E_FORBIDDEN` unless the caller holds `permission`. */
  require(principal: Principal, permission: Permission): void {
    if (!can(principal, permission))
      throw new FerryError(
        'E_FORBIDDEN',
        `permission denied: ${permission.toLowerCase().replaceAll('_', ' ')}`,
      );
  }

  /** May the caller write (create, upload) here? */
  canWrite(principal: Principal): boolean {
    return can(principal, 'WRITE');
  }

  /**
   * The entries of the caller's folder at `userPath`, folders leading to mounts first. A path that
   * no storage holds but mounts lie below is a folder of those alone, as is one whose storage lacks
   * it (`/a` of a mount at `/a/b/c` where the storage at `/a` has no `b`). `E_NOT_FOUND` when it is
   * neither a folder in a storage nor above a mount.
   */
  async list(principal: Principal, userPath: unknown): Promise<Folder> {
    return this.listFolder(this.pathOf(principal, userPath ?? '/'));
  }

  /**
   * The folders in the caller's `userPath` (a folder picker). With `forceRoot` an admin names a
   * path from the root of the tree rather than below its base path; anyone else is refused.
   */
  async dirs(principal: Principal, userPath: unknown, forceRoot: boolean): Promise<FileFacts[]> {
    let path: string;
    if (forceRoot) {
      if (!isAdmin(principal)) throw new FerryError('E_FORBIDDEN', 'Permission denied');
      path = normalizePath(userPath ?? '/');
    } else {
      path = this.pathOf(principal, userPath ?? '/');
    }
    return (await this.listFolder(path)).entries.filter((e) => e.isDir);
  }

  /**
   * The object at the caller's `userPath`: a storage's file or folder, or a folder made by the
   * mounts below it (`/` always is one). Where a storage has a file at a path that mounts lie
   * below, the folder wins, as in AList. `E_NOT_FOUND` when there is nothing.
   */
  async get(principal: Principal, userPath: unknown): Promise<Found> {
    const path = this.pathOf(principal, userPath ?? '/');
    const mounts = this.mounts;
    const name = baseName(path) || 'root';
    const hasMountsBelow = path === '/' || mounts.virtualChildren(path).length > 0;
    let entry: Entry | null = null;
    let resolved: Resolved | undefined;
    if (this.isCovered(path)) {
      try {
        resolved = mounts.resolve(path);
        entry = await resolved.driver.stat(resolved.path);
      } catch (err) {
        const missing = isFerryError(err, 'E_NOT_FOUND') || isFerryError(err, 'E_NO_STORAGE');
        if (!(hasMountsBelow && missing)) throw err;
      }
    }
    if (resolved && entry && (entry.isDir || !hasMountsBelow))
      return { path, facts: { ...entry, name }, provider: resolved.mount.record.driver, resolved };
    if (!hasMountsBelow) throw notFound();
    const first = mounts.all().find((m) => isWithin(m.record.mountPath, path));
    return {
      path,
      facts: { name, isDir: true, size: 0, modified: first?.record.modified ?? 0 },
      provider: 'unknown',
    };
  }

  /**
   * The files beside `found` whose names start with its name without the extension (`film.srt`
   * for `film.mp4`); empty when there are none or the folder cannot be listed.
   */
  async siblingsOf(found: Found): Promise<FileFacts[]> {
    const r = found.resolved;
    if (!r) return [];
    const dot = found.facts.name.lastIndexOf('.');
    const stem = dot < 0 ? found.facts.name : found.facts.name.slice(0, dot);
    try {
      return (await r.driver.list(parentPath(r.path))).filter(
        (e) => e.name !== found.facts.name && e.name.startsWith(stem),
      );
    } catch {
      return [];
    }
  }

  /** The sign of a download link for the virtual `path` (as `/d` and `/p` check it). */
  sign(path: string): string {
    return this.links.sign(path);
  }

  /** Make the caller's folder `userPath` (and its parents). Needs WRITE. */
  async mkdir(principal: Principal, userPath: unknown): Promise<void> {
    this.require(principal, 'WRITE');
    const r = this.mounts.resolve(this.pathOf(principal, userPath));
    await r.driver.mkdir(r.path);
  }

  /** Rename the caller's `userPath` to `name` in the same folder. Needs RENAME; a storage root is refused. */
  async rename(principal: Principal, userPath: unknown, name: unknown): Promise<void> {
    this.require(principal, 'RENAME');
    const r = this.mounts.resolve(this.pathOf(principal, userPath));
    if (r.path === '/') throw new FerryError('E_FORBIDDEN', 'a storage root cannot be renamed');
    await r.driver.rename(r.path, joinPath(parentPath(r.path), checkName(name)));
  }

  /**
   * The file a download names. With `sign`, `path` is absolute (the web UI builds
   * `/d/<base path><path>?sign=…`) and the sign must be this server's for exactly that path; no
   * caller is needed. Without, `path` is the caller's. A wrong, expired or other path's sign is
   * `E_UNAUTHORIZED`; a folder is `E_IS_A_DIRECTORY`.
   */
  async download(path: string, access: { sign: string } | { principal: Principal }): Promise<Download> {
    let virtual: string;
    if ('sign' in access) {
      virtual = normalizePath(`/${path}`);
      this.links.verify(virtual, access.sign);
    } else {
      virtual = this.pathOf(access.principal, path);
    }
    const r = this.mounts.resolve(virtual);
    const entry = await r.driver.stat(r.path);
    if (!entry) throw notFound();
    if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'is a folder');
    return { name: baseName(r.path), entry, read: (range) => r.driver.read(r.path, range) };
  }

  /**
   * The entries of the archive at the caller's `userPath`, without extracting it. Needs
   * READ_ARCHIVES. An archive on a remote driver is fetched to a temp file for listing and
   * removed afterwards.
   */
  async listArchive(
    principal: Principal,
    userPath: unknown,
    password: string,
  ): Promise<{ path: string; listing: ArchiveListing }> {
    this.require(principal, 'READ_ARCHIVES');
    const path = this.pathOf(principal, userPath);
    const r = this.mounts.resolve(path);
    const entry = await r.driver.stat(r.path);
    if (!entry) throw notFound();
    if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'not an archive but a folder');
    const format = formatOf(baseName(r.path));
    if (!format)
      throw new FerryError('E_ARCHIVE_FORMAT', `not an archive ferry can read: ${baseName(r.path)}`);
    const signal = AbortSignal.timeout(5 * 60_000);
    const work = (await DataArea.open(this.dataDir)).listing();
    return { path, listing: await listArchiveAt(r, work, { format, size: entry.size, password, signal }) };
  }

  /** The folders below `path` that lead to mounts, each dated by the first such mount, as AList dates them. */
  private virtualFolders(path: string): FileFacts[] {
    return this.mounts.virtualChildren(path).map((name) => {
      const below = childPath(path, name);
      const mount = this.mounts.all().find((m) => isWithin(m.record.mountPath, below));
      return { name, isDir: true, size: 0, modified: mount?.record.modified ?? 0 };
    });
  }

  /** True when some mount holds `path` (whether or not its driver runs). */
  private isCovered(path: string): boolean {
    return this.mounts.all().some((m) => isWithin(path, m.record.mountPath));
  }

  private async listFolder(path: string): Promise<Folder> {
    const virtual = this.virtualFolders(path);
    if (!this.isCovered(path)) {
      if (virtual.length === 0) throw notFound();
      return { path, entries: virtual, provider: 'unknown' };
    }
    try {
      const r = this.mounts.resolve(path);
      const shown = new Set(virtual.map((v) => v.name));
      const own = (await r.driver.list(r.path)).filter((e) => !shown.has(e.name));
      return { path, entries: [...virtual, ...own], provider: r.mount.record.driver };
    } catch (err) {
      if (virtual.length > 0 && (isFerryError(err, 'E_NOT_FOUND') || isFerryError(err, 'E_NO_STORAGE')))
        return { path, entries: virtual, provider: 'unknown' };
      throw err;
    }
  }
}
