import ssh2 from 'ssh2';
import { FerryError } from '../../errors.ts';
import { normalizePath } from '../paths.ts';

// ssh2 is CommonJS: Node's ESM loader cannot see its `utils` as a named export.
const { utils } = ssh2;

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
