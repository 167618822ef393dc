import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { PassThrough, Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, parseXML, type WebDAVClient } from 'webdav';
import { FerryError, isFerryError } from '../../errors.ts';
import type { Driver, DriverCapabilities, Entry, ReadOptions, WriteOptions } from '../driver.ts';
import {
  baseName,
  checkName,
  isWithin,
  joinPath,
  normalizePath,
  parentPath,
  relativeTo,
  TEMP_PREFIX,
  tempSiblingPath,
  tempToken,
} from '../paths.ts';
import type { WebDavSettings } from './settings.ts';

// The mount's settings come from AList's `addition`: read by `webdavSettings`, kept in their own file.
export { type WebDavSettings, type WebDavVendor, webdavSettings } from './settings.ts';

/** A mount must answer its first PROPFIND within this, or it is reported as unreachable. */
const OPEN_TIMEOUT_MS = 15_000;
/**
 * A connection on which no byte moved either way for this long is dead: it is destroyed and the
 * operation fails with E_BACKEND (node-fetch has no timeouts of its own). Generous, because a
 * server-side COPY of a large file sends nothing until it is done, and a reader of `read()` may
 * pause that long.
 */
const IDLE_TIMEOUT_MS = 5 * 60_000;
/** MKCOLs of one folder tried while the server says another is under way (423), 40–320 ms apart. */
const MKCOL_TRIES = 5;
/** Methods that change nothing on the server, so sending one twice is harmless. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'PROPFIND']);

/** One `<response>` of a PROPFIND, its href decoded and made relative to the address. */
interface DavItem {
  path: string;
  isDir: boolean;
  size: number;
  modified: number;
}

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
  /** Temp files of failed writes that are deleted again a little later (see `discard`). */
  private readonly lingering = new Map<string, symbol>();
  private closed = false;

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
      throw openFailure(err, settings, signal);
    }
  }

  localPath(): null {
    return null;
  }

  /** `quota-available-bytes` of the root when the server tells (rclone does not), else null. */
  async freeSpace(path: string): Promise<number | null> {
    this.locate(path);
    const body =
      '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>' +
      '<d:quota-available-bytes/></d:prop></d:propfind>';
    const response = await this.call('PROPFIND', this.root, { headers: { Depth: '0' }, data: body });
    const xml = await this.text(response, this.root);
    const props = (await parseXML(xml)).multistatus.response[0]?.propstat?.prop as Record<string, unknown>;
    const free = Number(props?.['quota-available-bytes']);
    return Number.isFinite(free) && free > 0 ? free : null;
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
    this.keep(temp);
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
      await this.moveInto(temp, full, options.overwrite === true);
    } catch (err) {
      // Read before destroying the source, which its generator would see as an error of its own.
      const fromSource = sourceError;
      source.destroy();
      if (sent) await this.discard(temp);
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
    this.keep(temp);
    if (!target) await this.ensureFolder(parentPath(dst.full), signal);
    try {
      const headers = { Destination: this.url(temp), Overwrite: 'T', Depth: '0' };
      await this.send('COPY', src.full, { headers, signal });
      signal?.throwIfAborted();
      await this.moveInto(temp, dst.full, options.overwrite === true);
      options.onProgress?.(entry.size);
    } catch (err) {
      await this.discard(temp);
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
    this.closed = true;
    this.lingering.clear();
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

  /**
   * Delete the temp file of a failed write or copy. Servers built on Go's x/net/webdav (rclone,
   * AList) may still be busy with the broken PUT and commit its partial file after our DELETE, so
   * the DELETE is repeated in the background after 1 s and after 5 s, unless a new write to the
   * same temp name (a retry with the same key) has started meanwhile.
   */
  private async discard(temp: string): Promise<void> {
    const attempt = () => this.send('DELETE', temp).catch(() => undefined);
    await attempt();
    const token = Symbol(temp);
    this.lingering.set(temp, token);
    const current = () => !this.closed && this.lingering.get(temp) === token;
    const later = (delays: number[]) => {
      const [delay, ...rest] = delays;
      if (delay === undefined) {
        if (current()) this.lingering.delete(temp);
        return;
      }
      const run = async () => {
        if (!current()) return;
        await attempt();
        later(rest);
      };
      setTimeout(() => void run(), delay).unref();
    };
    later([1000, 4000]);
  }

  /** A new write or copy to `temp` calls off the pending clean-up of an earlier attempt. */
  private keep(temp: string): void {
    this.lingering.delete(temp);
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
    const xml = await this.text(response, full);
    let result: Awaited<ReturnType<typeof parseXML>>;
    try {
      result = await parseXML(xml);
    } catch (err) {
      throw new FerryError('E_BACKEND', `WebDAV answered PROPFIND with invalid XML`, { cause: err });
    }
    return result.multistatus.response.map((item) => {
      const props = (item.propstat?.prop ?? {}) as Record<string, unknown>;
      const type = props.resourcetype;
      const isDir = typeof type === 'object' && type !== null && 'collection' in type;
      const modified = Date.parse(String(props.getlastmodified ?? ''));
      return {
        path: this.hrefPath(String(item.href)),
        isDir,
        size: isDir ? 0 : Number(props.getcontentlength ?? 0) || 0,
        modified: Number.isFinite(modified) ? modified : 0,
      };
    });
  }

  /** An href (absolute URL or path, percent-encoded) as a server path relative to the address. */
  private hrefPath(href: string): string {
    const path = decode(href.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '')).replace(/\/+$/, '');
    const rest = this.basePath && isWithin(path, this.basePath) ? path.slice(this.basePath.length) : path;
    return rest === '' ? '/' : rest;
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

  /** A thrown value as a FerryError: HTTP status, cancel, or an unreachable server. */
  private failure(err: unknown, what: string, signal?: AbortSignal): FerryError {
    if (signal?.aborted) return new FerryError('E_CANCELED', 'canceled', { cause: err });
    if (err instanceof FerryError) return err;
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number') {
      // A fresh cause: the library's error carries the whole response object.
      const cause = Object.assign(new Error(`HTTP ${status}`), { status });
      const fail = (code: ConstructorParameters<typeof FerryError>[0], message: string) =>
        new FerryError(code, `${message}: ${what}`, { cause });
      if (status === 404 || status === 410) return fail('E_NOT_FOUND', 'not found');
      // 409: an intermediate folder is missing (RFC 4918 §9.7.1).
      if (status === 409) return fail('E_NOT_FOUND', 'parent folder not found');
      if (status === 412) return fail('E_EXISTS', 'already exists');
      if (status === 401) return fail('E_STORAGE_CONFIG', 'WebDAV server refused the username or password');
      if (status === 403) return fail('E_FORBIDDEN', 'WebDAV server refused');
      if (status === 507) return fail('E_NO_SPACE', 'WebDAV server is out of space');
      return fail('E_BACKEND', `WebDAV server answered HTTP ${status}`);
    }
    return new FerryError('E_BACKEND', `WebDAV server at ${this.address} failed on ${what}: ${reason(err)}`, {
      cause: err,
    });
  }
}

/** The HTTP status behind a request's failure (see `failure`), if the server answered at all. */
function httpStatus(err: unknown): number | undefined {
  if (!(err instanceof FerryError)) return undefined;
  const status = (err.cause as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' ? status : undefined;
}

/** An http(s) agent whose sockets are destroyed after IDLE_TIMEOUT_MS without traffic. */
function idleAgent<A extends typeof HttpAgent | typeof HttpsAgent>(
  Agent: A,
  options: { rejectUnauthorized?: boolean },
): HttpAgent {
  const agent = new Agent({ keepAlive: true, timeout: IDLE_TIMEOUT_MS, ...options });
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (opts, callback) => {
    const socket = create(opts, callback) as Socket | null | undefined;
    socket?.on('timeout', () => {
      const error = Object.assign(new Error(`no traffic for ${IDLE_TIMEOUT_MS / 1000} s`), {
        code: 'ETIMEDOUT',
      });
      socket.destroy(error);
    });
    return socket;
  };
  return agent;
}

function openFailure(err: unknown, settings: WebDavSettings, signal: AbortSignal): FerryError {
  const at = `the WebDAV server at ${settings.address}`;
  const config = (message: string) => new FerryError('E_STORAGE_CONFIG', message, { cause: err });
  if (signal.aborted) return config(`${at} did not answer within ${OPEN_TIMEOUT_MS / 1000} s`);
  const status = httpStatus(err);
  if (status === 401) return config('WebDAV server refused the username or password');
  if (!(err instanceof FerryError)) return config(`cannot reach ${at}: ${reason(err)}`);
  if (err.code === 'E_BACKEND' && status === undefined)
    return config(`cannot reach ${at}: ${reason(err.cause)}`);
  return config(`cannot use ${settings.rootFolderPath} on ${at}: ${err.message}`);
}

/** The short reason of a network error: its errno code when it has one. */
function reason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && e.code !== '') return e.code;
  return typeof e?.message === 'string' ? e.message : String(err);
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function plainName(name: string): boolean {
  try {
    checkName(name);
    return true;
  } catch {
    return false;
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
