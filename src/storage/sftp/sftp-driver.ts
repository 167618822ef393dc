import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Attributes } from 'ssh2';
import { FerryError, isFerryError } from '../../errors.ts';
import {
  checkRange,
  type Driver,
  type DriverCapabilities,
  type Entry,
  type ReadOptions,
  type WriteOptions,
} from '../driver.ts';
import {
  isWithin,
  joinPath,
  normalizePath,
  parentPath,
  relativeTo,
  TEMP_PREFIX,
  tempPathFor,
  tempSiblingPath,
} from '../paths.ts';
import { RemoteFileReader, RemoteFileWriter } from './remote-file.ts';
import { call, isDir, isLink, nullIfMissing, OP_UNSUPPORTED, sftpCode, toEntry } from './session.ts';
import { SessionKeeper } from './session-keeper.ts';
import type { SftpSettings } from './settings.ts';

// The mount's settings come from AList's `addition`: read by `sftpSettings`, kept in their own file.
export { type SftpSettings, sftpSettings } from './settings.ts';

/** Children removed at once while deleting a tree. */
const REMOVE_CONCURRENCY = 8;

/**
 * An SFTP server (or a folder on it). One SSH connection carries every call; when it drops, calls
 * in flight fail with `E_BACKEND` (the engine retries) and the next call connects again. Writes
 * stream into a hidden temp sibling, renamed into place when complete: over an existing file with
 * `posix-rename@openssh.com` when the server offers it (atomic), else remove then rename. Reads
 * and writes keep a few requests in flight, so memory stays flat whatever the file size.
 * The server's host key is not checked (as in AList): the mount trusts its network path.
 */
export class SftpDriver implements Driver {
  readonly name = 'SFTP';
  readonly capabilities: DriverCapabilities;
  private noStatvfs = false;

  private constructor(
    private readonly sessions: SessionKeeper,
    private readonly root: string,
  ) {
    this.capabilities = {
      serverSideCopy: false,
      atomicRename: sessions.extensions['posix-rename@openssh.com'] === '1',
      folderRename: true,
      rangeRead: true,
    };
  }

  /**
   * Connect now, so a wrong password or address is a clear error at mount time; the root folder is
   * created when missing. `E_STORAGE_CONFIG` when the server refuses the login, cannot be reached,
   * or the root is a file.
   */
  static async open(settings: SftpSettings): Promise<SftpDriver> {
    const driver = new SftpDriver(await SessionKeeper.open(settings), settings.rootFolderPath);
    try {
      const root = await driver.sessions.statRemote(driver.root, '/');
      if (root && !isDir(root))
        throw new FerryError('E_STORAGE_CONFIG', `SFTP root_folder_path ${driver.root} is a file`);
      if (!root) await driver.ensureDir(driver.root);
    } catch (err) {
      await driver.close();
      throw err;
    }
    return driver;
  }

  localPath(): null {
    return null;
  }

  async stat(path: string): Promise<Entry | null> {
    const p = normalizePath(path);
    const attrs = await this.sessions.statRemote(this.remote(p), p);
    if (!attrs) return null;
    // A folder may be a link to one, which a delete must remove rather than go through: one
    // more request, for folders only.
    const own = isDir(attrs) && p !== '/' ? await this.sessions.lstatRemote(this.remote(p), p) : null;
    return own && isLink(own) ? { ...toEntry(p, attrs), link: true } : toEntry(p, attrs);
  }

  async list(path: string): Promise<Entry[]> {
    const p = normalizePath(path);
    const remote = this.remote(p);
    let children: { filename: string; attrs: Attributes }[];
    try {
      children = await this.sessions.request<{ filename: string; attrs: Attributes }[]>(p, (sftp, done) =>
        sftp.readdir(remote, done),
      );
    } catch (err) {
      // Servers differ in how they refuse to list a file (rclone: FAILURE, OpenSSH: NO_SUCH_FILE).
      const self = await this.sessions.statRemote(remote, p);
      if (!self) throw new FerryError('E_NOT_FOUND', `not found: ${p}`, { cause: err });
      if (!isDir(self)) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${p}`, { cause: err });
      throw err;
    }
    const entries: Entry[] = [];
    for (const { filename, attrs } of children) {
      if (filename === '.' || filename === '..' || filename.startsWith(TEMP_PREFIX)) continue;
      const child = joinPath(p, filename);
      // A link is shown as what it points at, marked so that nothing is deleted through it (see
      // Entry.link); a dangling one as an empty file. (rclone serve sftp shows no links; the
      // tests see them through OpenSSH's sftp-server, test/storage/sftp-openssh.test.ts.)
      const link = isLink(attrs);
      const target = link ? await this.sessions.statRemote(this.remote(child), child) : attrs;
      const entry = toEntry(child, target ?? { ...attrs, mode: 0o100000, size: 0 });
      entries.push(link && target ? { ...entry, link: true } : entry);
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async read(path: string, options: ReadOptions = {}): Promise<Readable> {
    const p = normalizePath(path);
    const remote = this.remote(p);
    checkRange(options);
    const attrs = await this.sessions.statRemote(remote, p);
    if (!attrs) throw new FerryError('E_NOT_FOUND', `not found: ${p}`);
    if (isDir(attrs)) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${p}`);
    if (options.signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    // Open now, so a missing or unreadable file is an error of read() rather than of the stream.
    const session = await this.sessions.live();
    const handle = await call<Buffer>(session, p, (done) => session.sftp.open(remote, 'r', done));
    // Reads stop at the size stat gave: no requests past the end (each costs a round trip).
    const lastByte = Number(attrs.size ?? 0) - 1;
    const end = options.end === undefined ? lastByte : Math.min(options.end, lastByte);
    return new RemoteFileReader(session, handle, p, { ...options, end });
  }

  async write(path: string, source: Readable, options: WriteOptions = {}): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_IS_A_DIRECTORY', 'cannot write the root');
    const remote = this.remote(p);
    const { signal } = options;
    try {
      signal?.throwIfAborted();
      const existing = await this.sessions.statRemote(remote, p);
      if (existing && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${p}`);
      if (existing && isDir(existing)) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${p}`);
      await this.ensureDir(this.remote(parentPath(p)));
      const temp = this.remote(tempPathFor(p, options.tempKey));
      const session = await this.sessions.live();
      // A new file, never one left by an interrupted attempt with the same key truncated: that
      // attempt (the same task on a node paused past its lease) may still hold it open, and its
      // late writes would land in this file once it has its final name. So 'wx', and when the
      // name is taken, the old file goes first.
      const open = () => call<Buffer>(session, p, (done) => session.sftp.open(temp, 'wx', done));
      const handle = await open().catch(async () => {
        await this.discard(temp);
        return open();
      });
      try {
        const sink = new RemoteFileWriter(session, handle, p, options.onProgress);
        await (signal ? pipeline(source, sink, { signal }) : pipeline(source, sink));
        // A cancel that lands after the last byte still cancels: the task will say "canceled".
        signal?.throwIfAborted();
        const { modified } = options;
        if (modified !== undefined) {
          // SFTP's times are whole seconds; the rename keeps them.
          const seconds = Math.floor(modified / 1000);
          await this.sessions.request(p, (sftp, done) => sftp.utimes(temp, seconds, seconds, done));
        }
        await options.beforePlace?.();
        await this.place(temp, remote, p, options.overwrite === true);
      } catch (err) {
        source.destroy();
        // A cancel answers at once; the temp file goes a round trip later.
        if (signal?.aborted) void this.discard(temp);
        else await this.discard(temp);
        throw err;
      }
    } catch (err) {
      if (signal?.aborted && !isFerryError(err, 'E_CANCELED'))
        throw new FerryError('E_CANCELED', 'canceled', { cause: err });
      throw err;
    }
  }

  async mkdir(path: string): Promise<void> {
    const p = normalizePath(path);
    await this.ensureDir(this.remote(p));
  }

  /**
   * Rename a file or folder; parent folders of `to` are created. With `overwrite`, a file replaces
   * a file (atomically where `posix-rename@openssh.com` is offered) and a folder replaces a folder
   * (the old one is set aside under a temp name and removed afterwards); a file never replaces a
   * folder. Without it, an existing `to` is `E_EXISTS` — checked, then renamed: some servers
   * (rclone) let a plain SFTP rename replace a file, so a file created in between would be lost.
   */
  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const src = normalizePath(from);
    const dst = normalizePath(to);
    if (src === '/' || dst === '/') throw new FerryError('E_FORBIDDEN', 'cannot rename the root');
    if (src === dst) throw new FerryError('E_SAME_PATH', 'source and destination are the same');
    if (isWithin(dst, src)) throw new FerryError('E_BAD_REQUEST', 'cannot move a folder into itself');
    const [srcRemote, dstRemote] = [this.remote(src), this.remote(dst)];
    const source = await this.sessions.statRemote(srcRemote, src);
    if (!source) throw new FerryError('E_NOT_FOUND', `not found: ${src}`);
    const target = await this.sessions.statRemote(dstRemote, dst);
    if (target && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${dst}`);
    await this.ensureDir(this.remote(parentPath(dst)));
    if (!target) {
      await this.sessions.request(dst, (sftp, done) => sftp.rename(srcRemote, dstRemote, done));
    } else if (isDir(target)) {
      if (!isDir(source)) throw new FerryError('E_IS_A_DIRECTORY', `a file cannot replace the folder ${dst}`);
      const aside = this.remote(tempSiblingPath(dst, randomBytes(8).toString('hex')));
      await this.sessions.request(dst, (sftp, done) => sftp.rename(dstRemote, aside, done));
      try {
        await this.sessions.request(dst, (sftp, done) => sftp.rename(srcRemote, dstRemote, done));
      } catch (err) {
        await this.sessions
          .request(dst, (sftp, done) => sftp.rename(aside, dstRemote, done))
          .catch(() => undefined);
        throw err;
      }
      await this.removeRemote(aside, dst, true);
    } else {
      if (isDir(source)) throw new FerryError('E_NOT_A_DIRECTORY', `a folder cannot replace the file ${dst}`);
      await this.replaceFile(srcRemote, dstRemote, dst);
    }
  }

  /** SFTP has no server-side copy (`capabilities.serverSideCopy` is false): the engine streams. */
  async copy(from: string, to: string): Promise<void> {
    normalizePath(from);
    normalizePath(to);
    throw new FerryError('E_INTERNAL', 'SFTP has no server-side copy');
  }

  /** Remove a file, link or folder tree; `E_FORBIDDEN` for the root itself. Links are not followed. */
  async remove(path: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const p = normalizePath(path);
    if (p === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    const remote = this.remote(p);
    const attrs = await this.sessions.lstatRemote(remote, p);
    if (attrs) await this.removeRemote(remote, p, isDir(attrs), options.signal);
  }

  /** From `statvfs@openssh.com` when the server offers and answers it; else null. */
  async freeSpace(path: string): Promise<number | null> {
    const p = normalizePath(path);
    const session = await this.sessions.live();
    if (this.noStatvfs || session.extensions['statvfs@openssh.com'] !== '2') return null;
    for (let probe = p; ; probe = parentPath(probe)) {
      try {
        const remote = this.remote(probe);
        const fs = await call<{ f_bavail: number | bigint; f_frsize: number | bigint }>(session, p, (done) =>
          session.sftp.ext_openssh_statvfs(remote, done),
        );
        return Number(fs.f_bavail) * Number(fs.f_frsize);
      } catch (err) {
        // The path itself may not exist yet: the nearest existing folder tells.
        if (isFerryError(err, 'E_NOT_FOUND') && probe !== '/') continue;
        // rclone offers statvfs@openssh.com yet answers OP_UNSUPPORTED.
        if ((err as FerryError).cause && sftpCode((err as FerryError).cause) === OP_UNSUPPORTED) {
          this.noStatvfs = true;
          return null;
        }
        throw err;
      }
    }
  }

  async close(): Promise<void> {
    await this.sessions.close();
  }

  /** The server path of a normalised driver path; `E_PATH_OUTSIDE_ROOT` if it could leave the root. */
  private remote(p: string): string {
    const remote = this.root === '/' ? p : p === '/' ? this.root : `${this.root}${p}`;
    if (!isWithin(remote, this.root))
      throw new FerryError('E_PATH_OUTSIDE_ROOT', `path leaves the storage root: ${p}`);
    return remote;
  }

  /** Create a folder and its parents (server paths); `E_EXISTS`/`E_NOT_A_DIRECTORY` for a file in the way. */
  private async ensureDir(remote: string, wanted = remote): Promise<void> {
    const shown = this.shown(remote);
    const attrs = await this.sessions.statRemote(remote, shown);
    if (attrs) {
      if (isDir(attrs)) return;
      if (remote === wanted) throw new FerryError('E_EXISTS', `already exists: ${shown}`);
      throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${shown}`);
    }
    if (remote !== '/') await this.ensureDir(parentPath(remote), wanted);
    try {
      await this.sessions.request(shown, (sftp, done) => sftp.mkdir(remote, done));
    } catch (err) {
      // Created meanwhile by someone else: fine.
      if (!isDir((await this.sessions.statRemote(remote, shown)) ?? { mode: 0 })) throw err;
    }
  }

  /** A server path as the user knows it: driver-relative inside the root. */
  private shown(remote: string): string {
    return isWithin(remote, this.root) ? relativeTo(remote, this.root) : remote;
  }

  /** Put a finished temp file at `remote`: replace (overwrite) or refuse an existing name. */
  private async place(temp: string, remote: string, path: string, overwrite: boolean): Promise<void> {
    if (overwrite) return this.replaceFile(temp, remote, path);
    // Checked again: the destination may have appeared while the bytes were moving.
    if (await this.sessions.statRemote(remote, path))
      throw new FerryError('E_EXISTS', `already exists: ${path}`);
    await this.sessions.request(path, (sftp, done) => sftp.rename(temp, remote, done));
  }

  /** Rename a file over another: atomic with posix-rename, else remove then rename. */
  private async replaceFile(from: string, to: string, path: string): Promise<void> {
    if (this.capabilities.atomicRename) {
      await this.sessions.request(path, (sftp, done) => sftp.ext_openssh_rename(from, to, done));
      return;
    }
    await this.sessions.request(path, (sftp, done) => sftp.unlink(to, done)).catch(nullIfMissing);
    await this.sessions.request(path, (sftp, done) => sftp.rename(from, to, done));
  }

  /** Remove a failed write's temp file, when the connection still stands (a retry reuses the name). */
  private async discard(temp: string): Promise<void> {
    if (!this.sessions.connected) return;
    await this.sessions.request(temp, (sftp, done) => sftp.unlink(temp, done)).catch(() => undefined);
  }

  private async removeRemote(
    remote: string,
    path: string,
    dir: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    if (signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    if (!dir) {
      await this.sessions.request(path, (sftp, done) => sftp.unlink(remote, done)).catch(nullIfMissing);
      return;
    }
    const children = await this.sessions
      .request<{ filename: string; attrs: Attributes }[]>(path, (sftp, done) => sftp.readdir(remote, done))
      .catch(nullIfMissing);
    const names = (children ?? []).filter((c) => c.filename !== '.' && c.filename !== '..');
    for (let i = 0; i < names.length; i += REMOVE_CONCURRENCY) {
      await Promise.all(
        names
          .slice(i, i + REMOVE_CONCURRENCY)
          .map((c) =>
            this.removeRemote(`${remote}/${c.filename}`, `${path}/${c.filename}`, isDir(c.attrs), signal),
          ),
      );
    }
    await this.sessions.request(path, (sftp, done) => sftp.rmdir(remote, done)).catch(nullIfMissing);
  }
}
