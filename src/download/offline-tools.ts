import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { OfflineDownloadConfig } from '../config.ts';
import { FerryError } from '../errors.ts';
import { FileSystemFlush, syncFileSystem } from '../io/background-flush.ts';
import { detachFile } from '../io/detach-file.ts';
import { Aria2Client, Aria2Daemon, type Aria2Status } from './aria2.ts';
import type { HttpDownloader, HttpResumeState } from './http-download.ts';
import { HostPolicy } from './url-policy.ts';

/** How often a running aria2 download is asked for its status. */
const ARIA2_POLL_MS = 200;
/** The shortest wait between two polls, when the download is about to end. */
const ARIA2_POLL_MIN_MS = 10;
/**
 * aria2's `bt-stop-timeout` unless the config sets one: a torrent or magnet that gets no byte
 * from any peer for this long fails, instead of holding an offline-download worker for ever.
 */
const BT_STOP_TIMEOUT_S = '600';

/** A SimpleHttp download into an offline download's area (see `OfflineTools.httpInto`). */
export interface HttpIntoOptions {
  url: URL;
  signal: AbortSignal;
  /** Validators of the partial file saved by an earlier attempt, for `Range` + `If-Range`. */
  state: HttpResumeState;
  saveState(state: HttpResumeState): Promise<void>;
  onStart(start: { offset: number; total: number; fileName: string }): void;
  onBytes(n: number): void;
  /** Flush the file to disk as it comes and at the end; false leaves that to the OS. */
  sync: boolean;
  /** An earlier attempt ran: its partial file is detached before it is continued (`detachFile`). */
  resumed: boolean;
  /** Called before the finished file takes its place in `done/`: throws when that may not happen. */
  beforePlacing(): Promise<void>;
}

/** An aria2 download into an offline download's area (see `OfflineTools.aria2Into`). */
export interface Aria2IntoOptions {
  url: string;
  signal: AbortSignal;
  gid?: string;
  saveGid(gid: string): Promise<void>;
  /** Bytes completed so far (growing), and the total once known. */
  onProgress(completed: number, total: number): void;
  /** Flush the files to disk before returning; false leaves that to the OS. */
  sync: boolean;
  /** Called before the finished files take their place in `done/`: throws when that may not happen. */
  beforePlacing(): Promise<void>;
}

export interface Aria2DownloadOptions {
  url: string;
  /** Absolute folder aria2 writes into. */
  dir: string;
  signal: AbortSignal;
  /** The gid of an earlier attempt: followed when aria2 still has it, else the URL is added again (aria2 continues its files). */
  gid?: string;
  saveGid(gid: string): Promise<void>;
  onProgress(completed: number, total: number): void;
}

/**
 * The download tools offline-download tasks use, shared by all of them: the host policy, the
 * SimpleHttp downloader (loaded on first use, with its keep-alive connections), and aria2 — a configured
 * RPC endpoint, or ferry's own aria2c started on first use and stopped by `close()`.
 */
export class OfflineTools {
  readonly policy: HostPolicy;
  private httpDownloader: Promise<HttpDownloader> | null = null;
  private aria2Client: Promise<Aria2Client> | null = null;
  private daemon: Aria2Daemon | null = null;
  private closed = false;

  constructor(
    readonly config: OfflineDownloadConfig,
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.policy = new HostPolicy(config);
  }

  /** SimpleHttp, loaded on first use: a server without offline downloads holds none of it. */
  http(): Promise<HttpDownloader> {
    this.httpDownloader ??= import('./http-download.ts').then(
      (m) => new m.HttpDownloader(this.config, this.policy),
    );
    return this.httpDownloader;
  }

  /** Where offline downloads keep their files until transferred: `<dataDir>/offline`. */
  get tempRoot(): string {
    return join(this.dataDir, 'offline');
  }

  /**
   * The folder of the offline download `taskId` (`<dataDir>/offline/<taskId>`, the data area's
   * `offline(taskId)`): the downloaders write below it, the task reads the result through the data
   * area's driver. `done/` holds what is finished.
   */
  private areaOf(taskId: string): string {
    if (!/^[\w-]+$/.test(taskId)) throw new FerryError('E_BAD_REQUEST', 'bad task id');
    return join(this.tempRoot, taskId);
  }

  /**
   * Download `url` with SimpleHttp into the area of `taskId`: to `partial`, continued from where
   * an earlier attempt stopped, then renamed to `done/<file name>` once whole.
   */
  async httpInto(taskId: string, options: HttpIntoOptions): Promise<void> {
    const area = this.areaOf(taskId);
    await mkdir(area, { recursive: true });
    const partPath = join(area, 'partial');
    if (options.resumed) await detachFile(partPath);
    const http = await this.http();
    const { fileName } = await http.download({ ...options, partPath });
    await options.beforePlacing();
    const done = join(area, 'done');
    await mkdir(done, { recursive: true });
    await rename(partPath, join(done, fileName));
  }

  /**
   * Download `url` with aria2 into the area of `taskId` (`aria2/`, which becomes `done/` once
   * complete). aria2 does not flush: with `sync`, the disk writes what has arrived while the rest
   * comes, and the flush at the end waits for the tail only.
   */
  async aria2Into(taskId: string, options: Aria2IntoOptions): Promise<void> {
    const area = this.areaOf(taskId);
    const dir = join(area, 'aria2');
    await mkdir(dir, { recursive: true });
    let reported = 0;
    const writeback = options.sync ? new FileSystemFlush(dir) : null;
    await this.aria2Download({
      url: options.url,
      dir,
      signal: options.signal,
      ...(options.gid !== undefined && { gid: options.gid }),
      saveGid: options.saveGid,
      onProgress: (completed, total) => {
        if (completed > reported) writeback?.wrote(completed - reported);
        reported = Math.max(reported, completed);
        options.onProgress(completed, total);
      },
    });
    // aria2's control files mean "unfinished"; a finished download has none left, but be sure.
    for (const name of await readdir(dir))
      if (name.endsWith('.aria2')) await rm(join(dir, name), { force: true });
    await options.beforePlacing();
    const done = join(area, 'done');
    await rename(dir, done);
    if (options.sync) await syncFileSystem(done, options.signal);
  }

  /** The aria2 RPC client, starting ferry's own aria2c the first time when no RPC URL is configured. */
  aria2(): Promise<Aria2Client> {
    if (this.closed) return Promise.reject(new FerryError('E_BACKEND', 'shutting down'));
    const { rpcUrl, secret, binary } = this.config.aria2;
    this.aria2Client ??= rpcUrl
      ? Promise.resolve(new Aria2Client(rpcUrl, secret))
      : Aria2Daemon.start({ binary, dir: this.tempRoot, log: this.log }).then(
          (daemon) => {
            this.daemon = daemon;
            if (this.closed) void daemon.close();
            return daemon.client;
          },
          (err) => {
            this.aria2Client = null; // try again next time (aria2c installed meanwhile)
            throw err;
          },
        );
    return this.aria2Client;
  }

  /** Pid of ferry's own aria2c, when it runs (tests check it is gone after close). */
  get aria2Pid(): number | undefined {
    return this.daemon?.pid;
  }

  /**
   * Run one aria2 download to completion, following what it produces (a .torrent or magnet link
   * becomes the torrent's download). Cancel: `forceRemove` at once, then the result is dropped.
   */
  async aria2Download(options: Aria2DownloadOptions): Promise<void> {
    const { signal } = options;
    const client = await this.aria2();
    let gid = options.gid;
    try {
      const known = gid ? await client.findStatus(gid) : null;
      if (!known || known.status === 'removed' || known.status === 'error') {
        if (gid) await client.call('aria2.removeDownloadResult', [gid]).catch(() => undefined);
        gid = await client.addUri([options.url], {
          // A fetched .torrent stays in memory: only the payload lands in the download folder.
          'follow-torrent': 'mem',
          'bt-stop-timeout': BT_STOP_TIMEOUT_S,
          ...this.config.aria2.options,
          dir: options.dir,
          continue: 'true',
        });
        await options.saveGid(gid);
      }
      for (;;) {
        signal.throwIfAborted();
        const status = await client.tellStatus(gid as string);
        const total = Number(status.totalLength);
        const max = this.config.maxBytes;
        if (max > 0 && total > max)
          throw new FerryError(
            'E_BAD_REQUEST',
            `file is ${total} bytes, over offlineDownload.maxBytes (${max})`,
          );
        options.onProgress(Number(status.completedLength), total);
        if (status.status === 'complete') {
          await client.call('aria2.removeDownloadResult', [gid]).catch(() => undefined);
          const next = status.followedBy?.[0];
          if (!next) return;
          gid = next;
          await options.saveGid(gid);
          continue;
        }
        if (status.status === 'error') {
          await client.call('aria2.removeDownloadResult', [gid]).catch(() => undefined);
          throw aria2Error(status, this.config.aria2.options['bt-stop-timeout'] ?? BT_STOP_TIMEOUT_S);
        }
        if (status.status === 'removed')
          throw new FerryError('E_BACKEND', 'the download was removed from aria2');
        await sleep(nextPollMs(status), undefined, { signal });
      }
    } catch (err) {
      if (signal.aborted) {
        if (gid) await client.forget(gid);
        throw signal.reason instanceof Error ? signal.reason : err;
      }
      // Nothing keeps running behind a failed attempt; a retry re-adds the URL and aria2 continues its file.
      if (gid) await client.forget(gid).catch(() => undefined);
      throw err;
    }
  }

  /** Stop ferry's aria2c (its downloads resume with `--continue` at the next start) and close connections. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.httpDownloader) await (await this.httpDownloader).close().catch(() => undefined);
    await this.daemon?.close();
    this.daemon = null;
  }
}

/**
 * The wait before the next poll: the regular interval, or less when aria2's speed says the
 * download ends sooner, so the task moves on when the file is done and not up to a whole
 * interval later (a tenth of a 1 GiB download's time on a fast link).
 */
function nextPollMs(status: Aria2Status): number {
  const left = Number(status.totalLength) - Number(status.completedLength);
  const speed = Number(status.downloadSpeed);
  if (!(left > 0 && speed > 0)) return ARIA2_POLL_MS;
  return Math.min(ARIA2_POLL_MS, Math.max(ARIA2_POLL_MIN_MS, (left / speed) * 1000));
}

/**
 * aria2's error as ferry's: the codes (see its manual, EXIT STATUS) that retrying cannot fix fail
 * the task at once. `btStopTimeout` is the `bt-stop-timeout` in force, for its message.
 */
function aria2Error(status: Aria2Status, btStopTimeout: string): FerryError {
  const message = `aria2: ${status.errorMessage || 'download failed'} (code ${status.errorCode ?? '?'})`;
  switch (status.errorCode) {
    case '7': // stopped unfinished: a torrent that got no data for bt-stop-timeout seconds
      return new FerryError(
        'E_REMOTE_REFUSED',
        `aria2: no peer sent any data for ${btStopTimeout} s (bt-stop-timeout): the torrent has no reachable seeds; retry it later`,
      );
    case '3': // resource not found
    case '24': // HTTP authorization failed
      return new FerryError('E_REMOTE_REFUSED', message);
    case '21': // an FTP command failed; 530 is "not logged in", which no retry fixes
      return /status=530\b/.test(message)
        ? new FerryError(
            'E_REMOTE_REFUSED',
            `aria2: the FTP server refused the login (530): wrong user or password`,
          )
        : new FerryError('E_BACKEND', message);
    case '9': // not enough disk space
      return new FerryError('E_NO_SPACE', message);
    default:
      return new FerryError('E_BACKEND', message);
  }
}
