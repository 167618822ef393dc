import type { Attributes, ConnectConfig, SFTPWrapper } from 'ssh2';
import { FerryError } from '../../errors.ts';
import { call, connect, connectError, type Done, nullIfMissing, type Session } from './session.ts';
import type { SftpSettings } from './settings.ts';

/*
 * The driver's way to its server across dropped connections: one session at a time, connected
 * again by the next call after it was lost, and the requests sent on whichever session is live.
 */

/**
 * The sessions of one mount. One SSH connection carries every call; when it drops, calls in flight
 * fail with `E_BACKEND` (the engine retries) and the next call connects again. After `close`,
 * every call is `E_BACKEND`.
 */
export class SessionKeeper {
  /** What the server announced at the first connection; the driver's capabilities are fixed from it. */
  readonly extensions: Record<string, string>;
  private current: Session | null;
  private connecting: Promise<Session> | null = null;
  private closed = false;

  private constructor(
    private readonly config: ConnectConfig,
    private readonly address: string,
    session: Session,
  ) {
    this.current = session;
    this.extensions = session.extensions;
  }

  /** Connect now. `E_STORAGE_CONFIG` when the server refuses the login or cannot be reached. */
  static async open(settings: SftpSettings): Promise<SessionKeeper> {
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
    return new SessionKeeper(config, address, session);
  }

  /** Whether a session stands now; asking never connects. */
  get connected(): boolean {
    return this.current !== null && !this.current.lost.aborted;
  }

  /** The live connection, or a new one when it dropped (concurrent callers share the attempt). */
  async live(): Promise<Session> {
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
  async request<T = void>(path: string, send: (sftp: SFTPWrapper, done: Done<T>) => void): Promise<T> {
    const session = await this.live();
    return call<T>(session, path, (done) => send(session.sftp, done));
  }

  /** `stat` (links followed), or null when nothing is there. */
  async statRemote(remote: string, path: string): Promise<Attributes | null> {
    return this.request<Attributes>(path, (sftp, done) => sftp.stat(remote, done)).catch(nullIfMissing);
  }

  /** `lstat` (a link itself), or null when nothing is there. */
  async lstatRemote(remote: string, path: string): Promise<Attributes | null> {
    return this.request<Attributes>(path, (sftp, done) => sftp.lstat(remote, done)).catch(nullIfMissing);
  }

  /** End the session, waiting up to a second for the server to see it go; no connection after this. */
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
}
