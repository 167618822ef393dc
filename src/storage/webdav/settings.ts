import { FerryError } from '../../errors.ts';
import { normalizePath } from '../paths.ts';

export type WebDavVendor = 'other' | 'nextcloud' | 'owncloud' | 'sharepoint';
const VENDORS: readonly string[] = ['other', 'nextcloud', 'owncloud', 'sharepoint'];

/** AList's `addition` fields of the WebDav driver. */
export interface WebDavSettings {
  /** Base URL of the share (`http(s)://host[:port][/path]`), no trailing slash, never credentials. */
  address: string;
  username: string;
  password: string;
  /** The folder on the server the mount starts at (normalised; `/` for the whole share). */
  rootFolderPath: string;
  /** Kept for AList compatibility; every vendor is spoken to the same way (Basic auth). */
  vendor: WebDavVendor;
  tlsInsecureSkipVerify: boolean;
}

/** Read AList's `addition` for WebDav; E_STORAGE_CONFIG on missing or malformed values. */
export function webdavSettings(addition: Record<string, unknown>): WebDavSettings {
  const bad = (message: string) => new FerryError('E_STORAGE_CONFIG', `WebDav: ${message}`);
  // Messages name the field, never its value: the address may hold credentials, the password is one.
  const text = (key: string, fallback: string): string => {
    const value = addition[key];
    if (value === undefined || value === null || value === '') return fallback;
    if (typeof value !== 'string') throw bad(`${key} must be a string`);
    return value;
  };
  const raw = text('address', '').trim();
  if (!raw) throw bad('address is required');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad('address is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw bad('address must start with http:// or https://');
  if (url.username || url.password)
    throw bad('address may not contain credentials: use the username and password fields');
  if (url.search || url.hash) throw bad('address may not contain a query or a fragment');
  let rootFolderPath: string;
  try {
    rootFolderPath = normalizePath(text('root_folder_path', '/'));
  } catch (err) {
    throw bad(`root_folder_path: ${(err as Error).message}`);
  }
  const vendor = text('vendor', 'other').toLowerCase();
  if (!VENDORS.includes(vendor)) throw bad(`vendor must be one of ${VENDORS.join(', ')}`);
  const skip = addition.tls_insecure_skip_verify ?? false;
  if (![true, false, 'true', 'false'].includes(skip as string | boolean))
    throw bad('tls_insecure_skip_verify must be true or false');
  return {
    address: `${url.origin}${url.pathname.replace(/\/+$/, '')}`,
    username: text('username', ''),
    password: text('password', ''),
    rootFolderPath,
    vendor: vendor as WebDavVendor,
    tlsInsecureSkipVerify: skip === true || skip === 'true',
  };
}
