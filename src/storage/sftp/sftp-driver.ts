import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import ssh2, { type Attributes, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { FerryError, isFerryError } from '../../errors.ts';
import type { Driver, DriverCapabilities, Entry, ReadOptions, WriteOptions } from '../driver.ts';
import {
  baseName,
  isWithin,
  joinPath,
  normalizePath,
  parentPath,
  relativeTo,
  TEMP_PREFIX,
  tempPathFor,
  tempSiblingPath,
} from '../paths.ts';

// ssh2 is CommonJS: Node's ESM loader cannot see its `utils` as a named export.
const { Client, utils } = ssh2;

/** AList's `addition` fields of the SFTP driver, checked. */
export interface SftpSettings {
  host: string;
  port: number;
  username: string;
  password?: string;
  /** PEM / OpenSSH private key text. */
  privateKey?: string;
  passphrase?: string;
  /** The folder on the server the mount starts at (`/` for all the user may see). */
  rootFolderPath: string;
}

/**
 * Read AList's `addition` for SFTP: `address` (`host:port`, port 22 when left out), `username`,
 * `password` and/or `private_key` (+ `passphrase`), `root_folder_path` (default `/`).
 * `E_STORAGE_CONFIG` for missing or malformed values; messages never repeat a secret.
 */
export function sftpSettings(addition: Record<string, unknown>): SftpSettings {
  const str = (key: string) => (typeof addition[key] === 'string' ? (addition[key] as string).trim() : '');
  const { host, port } = parseAddress(str('address'));
  const username = str('username');
  if (!username) throw new FerryError('E_STORAGE_CONFIG', 'SFTP needs a username');
  // Secrets are taken as given: leading or trailing spaces may be part of a password.
  const secret = (key: string) =>
    typeof addition[key] === 'string' && addition[key] !== '' ? (addition[key] as string) : undefined;
  const password = secret('password');
  const privateKey = secret('private_key');
  const passphrase = secret('passphrase');
  if (!password && !privateKey)
    throw new FerryError('E_STORAGE_CONFIG', 'SFTP needs a password or a private_key');
  if (privateKey) {
    const parsed = utils.parseKey(privateKey, passphrase);
    if (parsed instanceof Error) {
      // ssh2's reasons ("Encrypted private OpenSSH key detected, but no passphrase given") never quote the key.
      throw new FerryError('E_STORAGE_CONFIG', `SFTP private_key cannot be used: ${parsed.message}`);
    }
  }
  let rootFolderPath: string;
  try {
    rootFolderPath = normalizePath(str('root_folder_path') || '/');
  } catch (err) {
    throw new FerryError(
      'E_STORAGE_CONFIG',
      `SFTP root_folder_path is not acceptable: ${(err as Error).message}`,
    );
  }
  return {
    host,
    port,
    username,
    rootFolderPath,
    ...(password && { password }),
    ...(privateKey && { privateKey }),
    ...(passphrase && { passphrase }),
  };
}

function parseAddress(address: string): { host: string; port: number } {
  const bad = (why: string) =>
    new FerryError('E_STORAGE_CONFIG', `SFTP address ${JSON.stringify(address)} ${why}`);
  if (!address) throw new FerryError('E_STORAGE_CONFIG', 'SFTP needs an address (host:port)');
  const bare = address.replace(/^sftp:\/\//i, '').replace(/\/+$/, '');
  // `[::1]:22`, `host:22`, `host`, or a bare IPv6 address (more than one colon, no port).
  const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(bare) ?? /^([^:/\s]+)(?::(\d+))?$/.exec(bare);
  const host = match?.[1] ?? (bare.split(':').length > 2 && !/[\s/[\]]/.test(bare) ? bare : undefined);
  if (!host) throw bad('is not host:port');
  const port = match?.[2] === undefined ? 22 : Number(match[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad('has an invalid port');
  return { host, port };
}

/** Bytes per read/write request: ssh2 caps a request at 34,000 bytes less 2 KiB of overhead for
 * servers other than OpenSSH, and splits anything larger into requests sent one after another. */
const PIECE = 31 * 1024;
/** Requests in flight per stream: enough to hide the round trip, ~0.5 MB of memory. */
const IN_FLIGHT = 16;
/** Children removed at once while deleting a tree. */
const REMOVE_CONCURRENCY = 8;
/** SFTP status codes (draft-ietf-secsh-filexfer-02) that ferry tells apart. */
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
const OP_UNSUPPORTED = 8;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** One SSH connection and its SFTP channel; `lost` fires when either goes away. */
interface Session {
  client: InstanceType<typeof Client>;
  sftp: SFTPWrapper;
  lost: AbortSignal;
  extensions: Record<string, string>;
}

type Done<T> = (err: Error | null | undefined, value?: T) => void;

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
  private current: Session | null;
  private connecting: Promise<Session> | null = null;
  private closed = false;
  private noStatvfs = false;

  private constructor(
    private readonly config: ConnectConfig,
    private readonly address: string,
    private readonly root: string,
    session: Session,
  ) {
    this.current = session;
    this.capabilities = {
      serverSideCopy: false,
      atomicRename: session.extensions['posix-rename@openssh.com'] === '1',
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
    const address = settings.host.includes(':')
      ? `[${settings.host}]:${settings.port}`
      : `${settings.host}:${settings.port}`;
    const config: ConnectConfig = {
      host: settings.host,
      port: settings.port,
      username: settings.username,
      ...(settings.password && { password: settings.password, tryKeyboard: true }),
      ...(settings.privateKey && { privateKey: settings.privateKey }),
      ...(settings.passphrase && { passphrase: settings.passphrase }),
      readyTimeout: 15_000,
      // A silent peer is noticed within ~30 s; a closed socket at once.
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
    };
    let session: Session;
    try {
      session = await connect(config);
    } catch (err) {
      throw connectError(err, address, true);
    }
    const driver = new SftpDriver(config, address, settings.rootFolderPath, session);
    try {
      const root = await driver.statRemote(driver.root, '/');
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
    const attrs = await this.statRemote(this.remote(p), p);
    if (!attrs) return null;
    // A folder may be a link to one, which a delete must remove rather than go through: one
    // more request, for folders only.
    const own = isDir(attrs) && p !== '/' ? await this.lstatRemote(this.remote(p), p) : null;
    return own && isLink(own) ? { ...toEntry(p, attrs), link: true } : toEntry(p, attrs);
  }

  async list(path: string): Promise<Entry[]> {
    const p = normalizePath(path);
    const remote = this.remote(p);
    let children: { filename: string; attrs: Attributes }[];
    try {
      children = await this.request<{ filename: string; attrs: Attributes }[]>(p, (sftp, done) =>
        sftp.readdir(remote, done),
      );
    } catch (err) {
      // Servers differ in how they refuse to list a file (rclone: FAILURE, OpenSSH: NO_SUCH_FILE).
      const self = await this.statRemote(remote, p);
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
      const target = link ? await this.statRemote(this.remote(child), child) : attrs;
      const entry = toEntry(child, target ?? { ...attrs, mode: 0o100000, size: 0 });
      entries.push(link && target ? { ...entry, link: true } : entry);
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async read(path: string, options: ReadOptions = {}): Promise<Readable> {
    const p = normalizePath(path);
    const remote = this.remote(p);
    checkRange(options);
    const attrs = await this.statRemote(remote, p);
    if (!attrs) throw new FerryError('E_NOT_FOUND', `not found: ${p}`);
    if (isDir(attrs)) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${p}`);
    if (options.signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    // Open now, so a missing or unreadable file is an error of read() rather than of the stream.
    const session = await this.live();
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
      const existing = await this.statRemote(remote, p);
      if (existing && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${p}`);
      if (existing && isDir(existing)) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${p}`);
      await this.ensureDir(this.remote(parentPath(p)));
      const temp = this.remote(tempPathFor(p, options.tempKey));
      const session = await this.live();
      // 'w' truncates: a temp left by an interrupted attempt with the same key is replaced.
      const handle = await call<Buffer>(session, p, (done) => session.sftp.open(temp, 'w', done));
      try {
        const sink = new RemoteFileWriter(session, handle, p, options.onProgress);
        await (signal ? pipeline(source, sink, { signal }) : pipeline(source, sink));
        // A cancel that lands after the last byte still cancels: the task will say "canceled".
        signal?.throwIfAborted();
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
    const source = await this.statRemote(srcRemote, src);
    if (!source) throw new FerryError('E_NOT_FOUND', `not found: ${src}`);
    const target = await this.statRemote(dstRemote, dst);
    if (target && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${dst}`);
    await this.ensureDir(this.remote(parentPath(dst)));
    if (!target) {
      await this.request(dst, (sftp, done) => sftp.rename(srcRemote, dstRemote, done));
    } else if (isDir(target)) {
      if (!isDir(source)) throw new FerryError('E_IS_A_DIRECTORY', `a file cannot replace the folder ${dst}`);
      const aside = this.remote(tempSiblingPath(dst, randomBytes(8).toString('hex')));
      await this.request(dst, (sftp, done) => sftp.rename(dstRemote, aside, done));
      try {
        await this.request(dst, (sftp, done) => sftp.rename(srcRemote, dstRemote, done));
      } catch (err) {
        await this.request(dst, (sftp, done) => sftp.rename(aside, dstRemote, done)).catch(() => undefined);
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
    const attrs = await this.lstatRemote(remote, p);
    if (attrs) await this.removeRemote(remote, p, isDir(attrs), options.signal);
  }

  /** From `statvfs@openssh.com` when the server offers and answers it; else null. */
  async freeSpace(path: string): Promise<number | null> {
    const p = normalizePath(path);
    const session = await this.live();
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
    this.closed = true;
    const session = this.current;
    this.current = null;
    if (!session || session.lost.aborted) return;
    const gone = new Promise((resolve) => session.lost.addEventListener('abort', resolve, { once: true }));
    session.client.end();
    await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    session.client.destroy();
  }

  /** The server path of a normalised driver path; `E_PATH_OUTSIDE_ROOT` if it could leave the root. */
  private remote(p: string): string {
    const remote = this.root === '/' ? p : p === '/' ? this.root : `${this.root}${p}`;
    if (!isWithin(remote, this.root))
      throw new FerryError('E_PATH_OUTSIDE_ROOT', `path leaves the storage root: ${p}`);
    return remote;
  }

  /** The live connection, or a new one when it dropped (concurrent callers share the attempt). */
  private async live(): Promise<Session> {
    if (this.closed) throw new FerryError('E_BACKEND', 'the SFTP driver is closed');
    if (this.current && !this.current.lost.aborted) return this.current;
    this.connecting ??= connect(this.config)
      .then(
        (session) => {
          if (this.closed) {
            session.client.end();
            throw new FerryError('E_BACKEND', 'the SFTP driver is closed');
          }
          this.current = session;
          return session;
        },
        (err: unknown) => {
          throw connectError(err, this.address, false);
        },
      )
      .finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  /** One SFTP request on the live connection; errors as FerryErrors about `path`. */
  private async request<T = void>(
    path: string,
    send: (sftp: SFTPWrapper, done: Done<T>) => void,
  ): Promise<T> {
    const session = await this.live();
    return call<T>(session, path, (done) => send(session.sftp, done));
  }

  /** `stat` (links followed), or null when nothing is there. */
  private async statRemote(remote: string, path: string): Promise<Attributes | null> {
    return this.request<Attributes>(path, (sftp, done) => sftp.stat(remote, done)).catch(nullIfMissing);
  }

  /** `lstat` (a link itself), or null when nothing is there. */
  private async lstatRemote(remote: string, path: string): Promise<Attributes | null> {
    return this.request<Attributes>(path, (sftp, done) => sftp.lstat(remote, done)).catch(nullIfMissing);
  }

  /** Create a folder and its parents (server paths); `E_EXISTS`/`E_NOT_A_DIRECTORY` for a file in the way. */
  private async ensureDir(remote: string, wanted = remote): Promise<void> {
    const shown = this.shown(remote);
    const attrs = await this.statRemote(remote, shown);
    if (attrs) {
      if (isDir(attrs)) return;
      if (remote === wanted) throw new FerryError('E_EXISTS', `already exists: ${shown}`);
      throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${shown}`);
    }
    if (remote !== '/') await this.ensureDir(parentPath(remote), wanted);
    try {
      await this.request(shown, (sftp, done) => sftp.mkdir(remote, done));
    } catch (err) {
      // Created meanwhile by someone else: fine.
      if (!isDir((await this.statRemote(remote, shown)) ?? { mode: 0 })) throw err;
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
    if (await this.statRemote(remote, path)) throw new FerryError('E_EXISTS', `already exists: ${path}`);
    await this.request(path, (sftp, done) => sftp.rename(temp, remote, done));
  }

  /** Rename a file over another: atomic with posix-rename, else remove then rename. */
  private async replaceFile(from: string, to: string, path: string): Promise<void> {
    if (this.capabilities.atomicRename) {
      await this.request(path, (sftp, done) => sftp.ext_openssh_rename(from, to, done));
      return;
    }
    await this.request(path, (sftp, done) => sftp.unlink(to, done)).catch(nullIfMissing);
    await this.request(path, (sftp, done) => sftp.rename(from, to, done));
  }

  /** Remove a failed write's temp file, when the connection still stands (a retry reuses the name). */
  private async discard(temp: string): Promise<void> {
    if (!this.current || this.current.lost.aborted) return;
    await this.request(temp, (sftp, done) => sftp.unlink(temp, done)).catch(() => undefined);
  }

  private async removeRemote(
    remote: string,
    path: string,
    dir: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    if (signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    if (!dir) {
      await this.request(path, (sftp, done) => sftp.unlink(remote, done)).catch(nullIfMissing);
      return;
    }
    const children = await this.request<{ filename: string; attrs: Attributes }[]>(path, (sftp, done) =>
      sftp.readdir(remote, done),
    ).catch(nullIfMissing);
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
    await this.request(path, (sftp, done) => sftp.rmdir(remote, done)).catch(nullIfMissing);
  }
}

/** Open an SSH connection and its SFTP channel. Rejects with ssh2's own error. */
function connect(config: ConnectConfig): Promise<Session> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const lost = new AbortController();
    // Every stream and request in flight listens for the loss: no leak, however many.
    setMaxListeners(0, lost.signal);
    let settled = false;
    const fail = (err: Error) => {
      if (!settled) reject(err);
      settled = true;
      if (!lost.signal.aborted) lost.abort(err);
      client.end();
    };
    // An 'error' without a listener would crash the process; after the handshake it ends the session.
    client.on('error', fail);
    client.on('close', () => fail(new Error('connection closed')));
    client.on('keyboard-interactive', (_name, _instructions, _lang, prompts, finish) =>
      finish(prompts.map(() => config.password ?? '')),
    );
    client.on('ready', () => {
      // Requests are small and answered one by one: Nagle would hold each for a delayed ACK.
      client.setNoDelay(true);
      client.sftp((err, sftp) => {
        if (err) return fail(err);
        settled = true;
        sftp.on('error', fail);
        sftp.on('close', () => fail(new Error('SFTP channel closed')));
        // The extensions the server announced (ssh2 keeps them but has no public getter).
        const extensions = (sftp as unknown as { _extensions?: Record<string, string> })._extensions ?? {};
        resolve({ client, sftp, lost: lost.signal, extensions });
      });
    });
    try {
      client.connect(config);
    } catch (err) {
      fail(err as Error);
    }
  });
}

/**
 * Send one request on `session`. ssh2 silently drops requests sent on a closed channel, and may
 * never answer those in flight when the socket dies, so the connection's loss rejects too.
 */
function call<T>(session: Session, path: string, send: (done: Done<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onLost = () => reject(lostError(session, path));
    if (session.lost.aborted) return onLost();
    session.lost.addEventListener('abort', onLost, { once: true });
    const done: Done<T> = (err, value) => {
      session.lost.removeEventListener('abort', onLost);
      if (err) reject(toFerry(err, path));
      else resolve(value as T);
    };
    try {
      send(done);
    } catch (err) {
      done(err as Error);
    }
  });
}

function lostError(session: Session, path: string): FerryError {
  const reason = session.lost.reason instanceof Error ? `: ${session.lost.reason.message}` : '';
  return new FerryError('E_BACKEND', `SFTP connection lost during ${path}${reason}`, {
    cause: session.lost.reason,
  });
}

function sftpCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** SFTP's answers as ferry's codes: missing → E_NOT_FOUND, refused → E_FORBIDDEN, the rest retryable. */
function toFerry(err: unknown, path: string): Error {
  if (err instanceof FerryError) return err;
  const e = err as Error;
  switch (sftpCode(e)) {
    case NO_SUCH_FILE:
      return new FerryError('E_NOT_FOUND', `not found: ${path}`, { cause: e });
    case PERMISSION_DENIED:
      return new FerryError('E_FORBIDDEN', `SFTP server refused access to ${path}`, { cause: e });
  }
  if (/no space|quota/i.test(e.message ?? ''))
    return new FerryError('E_NO_SPACE', `out of space writing ${path}`, { cause: e });
  return new FerryError('E_BACKEND', `SFTP failed on ${path}: ${e.message ?? String(e)}`, { cause: e });
}

function nullIfMissing(err: unknown): null {
  if (isFerryError(err, 'E_NOT_FOUND')) return null;
  throw err;
}

/** Why a connection could not be made. At mount time all is configuration; later only a refused login. */
function connectError(err: unknown, address: string, atOpen: boolean): FerryError {
  const e = err as Error & { level?: string; code?: string };
  if (e.level === 'client-authentication')
    return new FerryError('E_STORAGE_CONFIG', 'SFTP server refused the username, password or key', {
      cause: e,
    });
  const reason =
    e.code === 'ECONNREFUSED'
      ? 'connection refused'
      : e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN'
        ? 'host not found'
        : e.level === 'client-timeout'
          ? 'timed out'
          : e.message;
  return new FerryError(
    atOpen ? 'E_STORAGE_CONFIG' : 'E_BACKEND',
    `cannot reach SFTP server ${address}: ${reason}`,
    {
      cause: e,
    },
  );
}

function isDir(attrs: { mode: number }): boolean {
  return (attrs.mode & S_IFMT) === S_IFDIR;
}

function isLink(attrs: { mode: number }): boolean {
  return (attrs.mode & S_IFMT) === S_IFLNK;
}

function toEntry(path: string, attrs: Attributes): Entry {
  const dir = isDir(attrs);
  return {
    name: baseName(path),
    path,
    isDir: dir,
    size: dir ? 0 : Number(attrs.size ?? 0),
    modified: Number(attrs.mtime ?? 0) * 1000,
  };
}

function checkRange({ start, end }: ReadOptions): void {
  const bad = (n: number | undefined) => n !== undefined && !(Number.isSafeInteger(n) && n >= 0);
  if (bad(start) || bad(end) || (start !== undefined && end !== undefined && start > end)) {
    throw new FerryError('E_BAD_REQUEST', `invalid byte range ${start}-${end}`);
  }
}

/**
 * A remote file's bytes `start..end` (inclusive), with up to IN_FLIGHT reads outstanding and
 * pushed in order. Closes the handle when done, destroyed, aborted (`E_CANCELED`) or when the
 * connection drops (`E_BACKEND`).
 */
class RemoteFileReader extends Readable {
  private next: number;
  private readonly last: number;
  private readonly pending: { bytes: Promise<Buffer>; length: number }[] = [];
  private handle: Buffer | null;
  private readonly onAbort = () => this.destroy(new FerryError('E_CANCELED', 'canceled'));
  private readonly onLost = () => this.destroy(lostError(this.session, this.path));

  constructor(
    private readonly session: Session,
    handle: Buffer,
    private readonly path: string,
    private readonly options: ReadOptions,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.handle = handle;
    this.next = options.start ?? 0;
    this.last = options.end ?? Number.POSITIVE_INFINITY;
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    session.lost.addEventListener('abort', this.onLost, { once: true });
  }

  override _read(): void {
    while (this.pending.length < IN_FLIGHT && this.next <= this.last) {
      const length = Math.min(PIECE, this.last - this.next + 1);
      const bytes = this.piece(this.next, length);
      bytes.catch(() => undefined); // consumed below, or dropped after an error or the end
      this.pending.push({ bytes, length });
      this.next += length;
    }
    const head = this.pending.shift();
    if (!head) {
      this.push(null);
      return;
    }
    head.bytes.then(
      (buf) => {
        if (this.destroyed) return;
        if (buf.length < head.length) {
          // End of file: later pieces lie beyond it.
          this.pending.length = 0;
          this.next = Number.POSITIVE_INFINITY;
          if (buf.length > 0) this.push(buf);
          this.push(null);
        } else {
          this.push(buf);
        }
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  /** Bytes at `position`, fewer only at the end of the file (servers may answer short reads). */
  private async piece(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length && this.handle) {
      const handle = this.handle;
      const n = await call<number>(this.session, this.path, (done) =>
        this.session.sftp.read(handle, buf, got, length - got, position + got, done),
      );
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.session.lost.removeEventListener('abort', this.onLost);
    const handle = this.handle;
    this.handle = null;
    if (!handle) {
      done(err);
      return;
    }
    call(this.session, this.path, (cb) => this.session.sftp.close(handle, cb))
      .catch(() => undefined)
      .then(() => done(err));
  }
}

/**
 * Writes to an open remote file with up to IN_FLIGHT write requests outstanding; `_final` waits
 * for every answer and closes the handle, so the file is complete when the stream finishes.
 * Reports acknowledged bytes to `onProgress`. Fails with `E_BACKEND` when the connection drops.
 */
class RemoteFileWriter extends Writable {
  private position = 0;
  private inFlight = 0;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private handle: Buffer | null;
  private readonly onLost = () => this.destroy(lostError(this.session, this.path));

  constructor(
    private readonly session: Session,
    handle: Buffer,
    private readonly path: string,
    private readonly onProgress?: (bytes: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.handle = handle;
    session.lost.addEventListener('abort', this.onLost, { once: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.send(chunk).then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.settle()
      .then(() => {
        const handle = this.handle;
        this.handle = null;
        if (handle) return call(this.session, this.path, (cb) => this.session.sftp.close(handle, cb));
      })
      .then(() => done(), done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.session.lost.removeEventListener('abort', this.onLost);
    this.wake?.();
    const handle = this.handle;
    this.handle = null;
    if (!handle) {
      done(err);
      return;
    }
    call(this.session, this.path, (cb) => this.session.sftp.close(handle, cb))
      .catch(() => undefined)
      .then(() => done(err));
  }

  private async send(chunk: Buffer): Promise<void> {
    for (let offset = 0; offset < chunk.length; offset += PIECE) {
      while (this.inFlight >= IN_FLIGHT && !this.failure && !this.destroyed) await this.waitForAnswer();
      if (this.failure) throw this.failure;
      const handle = this.handle;
      if (!handle || this.destroyed) throw new FerryError('E_BACKEND', `write to ${this.path} was stopped`);
      const piece = chunk.subarray(offset, offset + PIECE);
      const at = this.position;
      this.position += piece.length;
      this.inFlight++;
      call(this.session, this.path, (cb) => this.session.sftp.write(handle, piece, 0, piece.length, at, cb))
        .then(
          () => {
            if (!this.destroyed) this.onProgress?.(piece.length);
          },
          (err: unknown) => {
            this.failure ??= err as Error;
          },
        )
        .finally(() => {
          this.inFlight--;
          this.wake?.();
        });
    }
  }

  /** Wait until every write is answered; the first failure, if any, is thrown. */
  private async settle(): Promise<void> {
    while (this.inFlight > 0 && !this.destroyed) await this.waitForAnswer();
    if (this.failure) throw this.failure;
  }

  private waitForAnswer(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = null;
        resolve();
      };
    });
  }
}
