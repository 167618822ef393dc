import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { PassThrough, Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, type WebDAVClient } from 'webdav';
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
  tempSiblingPath,
  tempToken,
} from '../paths.ts';
import { httpStatus, openFailure, requestFailure } from './errors.ts';
import { idleAgent } from './idle-agent.ts';
import { type DavItem, decode, parseItems, plainName, QUOTA_PROPFIND, quotaAvailable } from './propfind.ts';
import type { WebDavSettings } from './settings.ts';
import { TempCleanup } from './temp-cleanup.ts';

// The mount's settings come from AList's `addition`: read by `webdavSettings`, kept in their own file.
export { type WebDavSettings, type WebDavVendor, webdavSettings } from './settings.ts';

/** A mount must answer its first PROPFIND within this, or it is reported as unreachable. */
const OPEN_TIMEOUT_MS = 15_000;
/** MKCOLs of one folder tried while the server says another is under way (423), 40–320 ms apart. */
const MKCOL_TRIES = 5;
/** Methods that change nothing on the server, so sending one twice is harmless. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'PROPFIND']);

type Call = { headers?: Record<string, string>; data?: unknown; signal?: AbortSignal | undefined };
type FetchResponse = Awaited<ReturnType<WebDAVClient['customRequest']>> & { body?: Readable | null };

/**
 * A WebDAV share (or a folder of one). Writes go to a hidden temp sibling and are MOVEd into
 * place when complete; copies are server-side COPYs to a temp sibling, MOVEd likewise. MOVE with
 * `Overwrite: T` deletes the destination before moving (RFC 4918 §9.9.3), so renames are not
 * atomic. URLs are built here, one `encodeURIComponent` per segment: the `webdav` package's own
 * path encoding lets `\\` through, which URL parsing turns into `/` (and `..` into a real step).
 */
export class WebDavDriver implements Driver {
  readonly name = 'WebDav';
  readonly capabilities: DriverCapabilities = {
    serverSideCopy: true,
    atomicRename: false,
    // MOVE of a collection: one request, however the server carries it out.
    folderRename: true,
    rangeRead: true,
  };
  private readonly basePath: string;
  /** Temp files of failed writes, deleted again a little later (see `TempCleanup.discard`). */
  private readonly temps = new TempCleanup((temp) => this.send('DELETE', temp));

  private constructor(
    private readonly client: WebDAVClient,
    private readonly agents: HttpAgent[],
    private readonly address: string,
    private readonly root: string,
  ) {
    this.basePath = decode(new URL(address).pathname).replace(/\/+$/, '');
  }

  /**
   * Connect and PROPFIND the root folder, creating it when missing (as Local does). E_STORAGE_CONFIG
   * when the server is unreachable, refuses the credentials, or the root is a file.
   */
  static async open(settings: WebDavSettings): Promise<WebDavDriver> {
    const agents = [
      idleAgent(HttpAgent, {}),
      idleAgent(HttpsAgent, { rejectUnauthorized: !settings.tlsInsecureSkipVerify }),
    ];
    const client = createClient(settings.address, {
      ...(settings.username || settings.password
        ? { username: settings.username, password: settings.password }
        : {}),
      httpAgent: agents[0],
      httpsAgent: agents[1],
    });
    const driver = new WebDavDriver(client, agents, settings.address, settings.rootFolderPath);
    const signal = AbortSignal.timeout(OPEN_TIMEOUT_MS);
    try {
      const root = (await driver.propfind(driver.root, '0', signal))?.[0];
      if (!root && driver.root === '/') throw new FerryError('E_STORAGE_CONFIG', 'not found');
      if (!root) await driver.ensureFolder(driver.root, signal);
      else if (!root.isDir) throw new FerryError('E_STORAGE_CONFIG', 'root_folder_path is a file');
      return driver;
    } catch (err) {
      await driver.close();
      throw openFailure(err, settings, signal, OPEN_TIMEOUT_MS);
    }
  }

  localPath(): null {
    return null;
  }

  /** `quota-available-bytes` of the root when the server tells (rclone does not), else null. */
  async freeSpace(path: string): Promise<number | null> {
    this.locate(path);
    const headers = { Depth: '0' };
    const response = await this.call('PROPFIND', this.root, { headers, data: QUOTA_PROPFIND });
    return quotaAvailable(await this.text(response, this.root));
  }

  async stat(path: string): Promise<Entry | null> {
    const { p, full } = this.locate(path);
    const item = (await this.propfind(full, '0'))?.[0];
    return item
      ? { name: baseName(p), path: p, isDir: item.isDir, size: item.size, modified: item.modified }
      : null;
  }

  async list(path: string): Promise<Entry[]> {
    const { p, full } = this.locate(path);
    const items = await this.propfind(full, '1');
    if (!items) throw new FerryError('E_NOT_FOUND', `not found: ${p}`);
    const self = items.find((item) => item.path === full) ?? items[0];
    if (!self?.isDir) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${p}`);
    const entries = new Map<string, Entry>();
    for (const item of items) {
      const name = baseName(item.path);
      if (item === self || !plainName(name) || name.startsWith(TEMP_PREFIX)) continue;
      entries.set(name, { ...item, name, path: joinPath(p, name) });
    }
    return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async read(path: string, options: ReadOptions = {}): Promise<Readable> {
    const { p, full } = this.locate(path);
    const { start = 0, end, signal } = options;
    const bad = (n: number | undefined) => n !== undefined && !(Number.isSafeInteger(n) && n >= 0);
    if (bad(options.start) || bad(end) || (end !== undefined && start > end))
      throw new FerryError('E_BAD_REQUEST', `invalid byte range ${options.start}-${end}`);
    const entry = await this.stat(p);
    if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${p}`);
    if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${p}`);
    if (signal?.aborted) throw new FerryError('E_CANCELED', 'canceled');
    const ranged = start > 0 || end !== undefined;
    // Past the end (or an empty file) answers 416 to a range: nothing to read.
    if (ranged && start >= entry.size) return Readable.from([]);
    const headers: Record<string, string> = ranged ? { Range: `bytes=${start}-${end ?? ''}` } : {};
    let response: FetchResponse;
    try {
      response = await this.call('GET', full, { headers, signal });
    } catch (err) {
      if (httpStatus(err) === 416) return Readable.from([]);
      throw err;
    }
    const body = response.body ?? Readable.from([]);
    // A server that ignores Range answers 200 with the whole file: cut the range out here.
    const out = ranged && response.status === 200 ? slice(start, end) : new PassThrough();
    body.on('error', (err) => out.destroy(this.failure(err, `GET ${p}`, signal)));
    out.on('close', () => body.destroy());
    return body.pipe(out);
  }

  async write(path: string, source: Readable, options: WriteOptions = {}): Promise<void> {
    const { p, full } = this.locate(path);
    const { signal, onProgress } = options;
    if (p === '/') throw new FerryError('E_IS_A_DIRECTORY', 'cannot write the root');
    const existing = await this.stat(p);
    if (existing && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${p}`);
    if (existing?.isDir) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${p}`);
    const temp = tempSiblingPath(full, tempToken(p, options.tempKey));
    this.temps.keep(temp);
    let sourceError: unknown;
    let sent = false;
    // A generator rather than a pipe: an error of the source is told apart from one of the
    // request, and when the request stops (abort, server gone) the source is destroyed.
    async function* counted(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of source) {
          const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
          onProgress?.(buffer.length);
          yield buffer;
        }
      } catch (err) {
        sourceError = err;
        throw err;
      }
    }
    try {
      if (!existing) await this.ensureFolder(parentPath(full), signal);
      signal?.throwIfAborted();
      sent = true;
      await this.send('PUT', temp, { data: Readable.from(counted()), signal });
      // A cancel that lands after the last byte still cancels.
      signal?.throwIfAborted();
      await options.beforePlace?.();
      await this.moveInto(temp, full, options.overwrite === true);
    } catch (err) {
      // Read before destroying the source, which its generator would see as an error of its own.
      const fromSource = sourceError;
      source.destroy();
      if (sent) await this.temps.discard(temp);
      if (fromSource !== undefined && !signal?.aborted) {
        if (fromSource instanceof FerryError) throw fromSource;
        throw new FerryError('E_BACKEND', `the source failed while writing ${p}`, { cause: fromSource });
      }
      throw this.failure(err, `PUT ${p}`, signal);
    }
  }

  async mkdir(path: string): Promise<void> {
    const { p, full } = this.locate(path);
    const entry = await this.stat(p);
    if (entry && !entry.isDir) throw new FerryError('E_EXISTS', `a file is in the way: ${p}`);
    await this.ensureFolder(full);
  }

  /**
   * MOVE a file or folder; parent folders of `to` are created. A file never replaces a folder,
   * nor a folder a file. `E_SAME_PATH` onto itself, `E_BAD_REQUEST` for a folder into itself.
   */
  async rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<void> {
    const src = this.locate(from);
    const dst = this.locate(to);
    if (src.p === '/' || dst.p === '/') throw new FerryError('E_FORBIDDEN', 'cannot rename the root');
    if (src.p === dst.p) throw new FerryError('E_SAME_PATH', 'source and destination are the same');
    if (isWithin(dst.p, src.p)) throw new FerryError('E_BAD_REQUEST', 'cannot move a folder into itself');
    const entry = await this.stat(src.p);
    if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${src.p}`);
    const target = await this.stat(dst.p);
    if (target && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${dst.p}`);
    if (target && target.isDir !== entry.isDir) {
      throw target.isDir
        ? new FerryError('E_IS_A_DIRECTORY', `a file cannot replace the folder ${dst.p}`)
        : new FerryError('E_NOT_A_DIRECTORY', `a folder cannot replace the file ${dst.p}`);
    }
    if (!target) await this.ensureFolder(parentPath(dst.full));
    await this.moveInto(src.full, dst.full, options.overwrite === true);
  }

  /** Server-side COPY of one file to a temp sibling, then MOVEd into place; progress at the end. */
  async copy(from: string, to: string, options: WriteOptions = {}): Promise<void> {
    const src = this.locate(from);
    const dst = this.locate(to);
    const { signal } = options;
    const entry = await this.stat(src.p);
    if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${src.p}`);
    if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${src.p}`);
    if (src.p === dst.p) throw new FerryError('E_SAME_PATH', 'source and destination are the same');
    const target = await this.stat(dst.p);
    if (target && !options.overwrite) throw new FerryError('E_EXISTS', `already exists: ${dst.p}`);
    if (target?.isDir) throw new FerryError('E_IS_A_DIRECTORY', `is a folder: ${dst.p}`);
    const temp = tempSiblingPath(dst.full, tempToken(dst.p, options.tempKey));
    this.temps.keep(temp);
    if (!target) await this.ensureFolder(parentPath(dst.full), signal);
    try {
      const headers = { Destination: this.url(temp), Overwrite: 'T', Depth: '0' };
      await this.send('COPY', src.full, { headers, signal });
      signal?.throwIfAborted();
      await options.beforePlace?.();
      await this.moveInto(temp, dst.full, options.overwrite === true);
      options.onProgress?.(entry.size);
    } catch (err) {
      await this.temps.discard(temp);
      throw this.failure(err, `COPY ${src.p}`, signal);
    }
  }

  async remove(path: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const { p, full } = this.locate(path);
    if (p === '/') throw new FerryError('E_FORBIDDEN', 'cannot remove the root of a storage');
    try {
      await this.send('DELETE', full, { signal: options.signal });
    } catch (err) {
      if (!isFerryError(err, 'E_NOT_FOUND')) throw err;
    }
  }

  async close(): Promise<void> {
    this.temps.close();
    for (const agent of this.agents) agent.destroy();
  }

  /** The normalised driver path and the server path behind it, checked to stay inside the root. */
  private locate(path: string): { p: string; full: string } {
    const p = normalizePath(path);
    const full = this.root === '/' ? p : p === '/' ? this.root : `${this.root}${p}`;
    if (!isWithin(full, this.root)) throw new FerryError('E_PATH_OUTSIDE_ROOT', `outside the root: ${path}`);
    return { p, full };
  }

  private url(full: string): string {
    return `${this.address}${full.split('/').map(encodeURIComponent).join('/')}`;
  }

  /**
   * One request; HTTP and network errors become FerryErrors (see `failure`). A request that
   * changes nothing is sent once more when its connection was reset: a kept-alive connection the
   * server closed just as the request went out fails that way, and a new one succeeds.
   */
  private async call(method: string, full: string, init: Call = {}): Promise<FetchResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.client.customRequest('', {
          method,
          url: this.url(full),
          ...(init.headers && { headers: init.headers }),
          ...(init.data !== undefined && { data: init.data as string }),
          ...(init.signal && { signal: init.signal }),
        })) as FetchResponse;
      } catch (err) {
        // The error response's body holds its connection until read: let it go.
        (err as { response?: FetchResponse }).response?.body?.resume();
        const reset = (err as { code?: unknown } | null)?.code === 'ECONNRESET';
        if (attempt === 1 && reset && SAFE_METHODS.has(method) && !init.signal?.aborted) continue;
        throw this.failure(err, `${method} ${relativeTo(full, this.root)}`, init.signal);
      }
    }
  }

  /** A request whose answer's body only needs reading to the end (so the connection is reused). */
  private async send(method: string, full: string, init: Call = {}): Promise<void> {
    await this.text(await this.call(method, full, init), full);
  }

  private async text(response: FetchResponse, full: string): Promise<string> {
    try {
      return await response.text();
    } catch (err) {
      throw this.failure(err, relativeTo(full, this.root));
    }
  }

  /** MOVE `from` onto `to` (server paths); without `overwrite` the server refuses an existing `to` (412). */
  private async moveInto(from: string, to: string, overwrite: boolean): Promise<void> {
    const headers = { Destination: this.url(to), Overwrite: overwrite ? 'T' : 'F' };
    await this.send('MOVE', from, { headers });
  }

  /** The items of a PROPFIND at `full` (first the folder itself, usually), or null when absent. */
  private async propfind(full: string, depth: '0' | '1', signal?: AbortSignal): Promise<DavItem[] | null> {
    let response: FetchResponse;
    try {
      response = await this.call('PROPFIND', full, { headers: { Depth: depth }, signal });
    } catch (err) {
      if (isFerryError(err, 'E_NOT_FOUND')) return null;
      throw err;
    }
    return parseItems(await this.text(response, full), this.basePath);
  }

  /** Create the folder `full` (a server path) and its parents, PROPFIND first: MKCOL on an existing one varies by server. */
  private async ensureFolder(full: string, signal?: AbortSignal): Promise<void> {
    if (full === '/') return;
    const item = (await this.propfind(full, '0', signal))?.[0];
    if (item?.isDir) return;
    if (item) throw new FerryError('E_NOT_A_DIRECTORY', `not a folder: ${relativeTo(full, this.root)}`);
    await this.ensureFolder(parentPath(full), signal);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send('MKCOL', `${full}/`, { signal });
        return;
      } catch (err) {
        // Made by someone else in between: fine.
        if ((await this.propfind(full, '0', signal))?.[0]?.isDir) return;
        // 423 Locked: another MKCOL of this folder is under way (rclone answers so when several
        // writes into one new folder start at once). Wait for it, then look again.
        if (httpStatus(err) !== 423 || attempt >= MKCOL_TRIES) throw err;
        await sleep(20 * 2 ** attempt, undefined, { signal });
      }
    }
  }

  /** A thrown value as a FerryError: HTTP status, cancel, or an unreachable server (see `requestFailure`). */
  private failure(err: unknown, what: string, signal?: AbortSignal): FerryError {
    return requestFailure(err, what, this.address, signal);
  }
}

/** Bytes `start`..`end` (inclusive) of a whole-file stream. */
function slice(start: number, end: number | undefined): Transform {
  let position = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const from = Math.max(0, start - position);
      const to = end === undefined ? chunk.length : Math.min(chunk.length, end + 1 - position);
      position += chunk.length;
      done(null, from < to ? chunk.subarray(from, to) : undefined);
    },
  });
}
