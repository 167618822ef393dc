import { setMaxListeners } from 'node:events';
import ssh2, { type Attributes, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { FerryError, isFerryError } from '../../errors.ts';
import type { Entry } from '../driver.ts';
import { baseName } from '../paths.ts';

/*
 * The SFTP connection under the driver: connecting, sending one request, and reading SFTP's
 * answers (status codes, file modes) as ferry's errors and entries.
 */

const { Client } = ssh2;

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that ferry tells apart. */
const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
export const OP_UNSUPPORTED = 8;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** One SSH connection and its SFTP channel; `lost` fires when either goes away. */
export interface Session {
  client: InstanceType<typeof Client>;
  sftp: SFTPWrapper;
  lost: AbortSignal;
  extensions: Record<string, string>;
}

export type Done<T> = (err: Error | null | undefined, value?: T) => void;

/** Open an SSH connection and its SFTP channel. Rejects with ssh2's own error. */
export function connect(config: ConnectConfig): Promise<Session> {
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
export function call<T>(session: Session, path: string, send: (done: Done<T>) => void): Promise<T> {
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

export function lostError(session: Session, path: string): FerryError {
  const reason = session.lost.reason instanceof Error ? `: ${session.lost.reason.message}` : '';
  return new FerryError('E_BACKEND', `SFTP connection lost during ${path}${reason}`, {
    cause: session.lost.reason,
  });
}

export function sftpCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** SFTP's answers as ferry's codes: missing → E_NOT_FOUND, refused → E_FORBIDDEN, the rest retryable. */
export function toFerry(err: unknown, path: string): Error {
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

export function nullIfMissing(err: unknown): null {
  if (isFerryError(err, 'E_NOT_FOUND')) return null;
  throw err;
}

/** Why a connection could not be made. At mount time all is configuration; later only a refused login. */
export function connectError(err: unknown, address: string, atOpen: boolean): FerryError {
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

export function isDir(attrs: { mode: number }): boolean {
  return (attrs.mode & S_IFMT) === S_IFDIR;
}

export function isLink(attrs: { mode: number }): boolean {
  return (attrs.mode & S_IFMT) === S_IFLNK;
}

export function toEntry(path: string, attrs: Attributes): Entry {
  const dir = isDir(attrs);
  return {
    name: baseName(path),
    path,
    isDir: dir,
    size: dir ? 0 : Number(attrs.size ?? 0),
    modified: Number(attrs.mtime ?? 0) * 1000,
  };
}
