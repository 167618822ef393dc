import { TEMP_PREFIX } from '../storage/paths.ts';

const MAX_NAME_BYTES = 255;

/**
 * A safe file name from what a server or URL suggests: never a path (`/`, `\` and control
 * characters become `_`), never `.`/`..` or one of ferry's temp names, at most 255 bytes
 * (extension kept). `fallback` when nothing usable is left.
 */
export function sanitizeFileName(input: string, fallback = 'download'): string {
  let name = input.replace(/[/\\\u0000-\u001f\u007f]/g, '_').trim();
  if (name === '' || /^\.+$/.test(name)) return fallback;
  if (name.startsWith(TEMP_PREFIX)) name = `_${name.slice(1)}`;
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    const dot = name.lastIndexOf('.');
    const ext = dot > 0 && name.length - dot <= 16 ? name.slice(dot) : '';
    let stem = name.slice(0, name.length - ext.length);
    while (Buffer.byteLength(stem + ext) > MAX_NAME_BYTES) stem = stem.slice(0, -1);
    name = stem + ext;
  }
  return name;
}

/** The file name a URL points at: its last path segment, percent-decoded; for magnets their `dn`. */
export function nameFromUrl(url: URL): string {
  if (url.protocol === 'magnet:') return sanitizeFileName(url.searchParams.get('dn') ?? '', 'magnet');
  const segment = url.pathname.split('/').pop() ?? '';
  let decoded = segment;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    // keep it encoded: still a valid name
  }
  return sanitizeFileName(decoded, url.hostname || 'download');
}
