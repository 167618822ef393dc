/**
 * PROPFIND answers of the WebDAV driver read into plain values: the items of a folder or file
 * (`parseItems`), the free space of the root (`quotaAvailable`), and the hrefs and names in them.
 */
import { parseXML } from 'webdav';
import { FerryError } from '../../errors.ts';
import { checkName, isWithin } from '../paths.ts';

/** One `<response>` of a PROPFIND, its href decoded and made relative to the address. */
export interface DavItem {
  path: string;
  isDir: boolean;
  size: number;
  modified: number;
}

/** The body of a PROPFIND that asks only for `quota-available-bytes`. */
export const QUOTA_PROPFIND =
  '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>' +
  '<d:quota-available-bytes/></d:prop></d:propfind>';

/**
 * The items of a PROPFIND answer, their paths relative to `basePath` (the decoded path of the
 * address). E_BACKEND when `xml` is not XML.
 */
export async function parseItems(xml: string, basePath: string): Promise<DavItem[]> {
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
      path: hrefPath(String(item.href), basePath),
      isDir,
      size: isDir ? 0 : Number(props.getcontentlength ?? 0) || 0,
      modified: Number.isFinite(modified) ? modified : 0,
    };
  });
}

/** `quota-available-bytes` of the first item of an answer to QUOTA_PROPFIND, or null when none is told. */
export async function quotaAvailable(xml: string): Promise<number | null> {
  const props = (await parseXML(xml)).multistatus.response[0]?.propstat?.prop as Record<string, unknown>;
  const free = Number(props?.['quota-available-bytes']);
  return Number.isFinite(free) && free > 0 ? free : null;
}

/** An href (absolute URL or path, percent-encoded) as a server path relative to the address. */
function hrefPath(href: string, basePath: string): string {
  const path = decode(href.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '')).replace(/\/+$/, '');
  const rest = basePath && isWithin(path, basePath) ? path.slice(basePath.length) : path;
  return rest === '' ? '/' : rest;
}

export function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export function plainName(name: string): boolean {
  try {
    checkName(name);
    return true;
  } catch {
    return false;
  }
}
