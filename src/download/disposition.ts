import { parse as parseDisposition } from 'content-disposition';
import { sanitizeFileName } from './file-name.ts';

// Its own module so content-disposition loads with SimpleHttp, on first use, not at start.

/** The name in a `Content-Disposition` header (`filename*=UTF-8''…` preferred), or null. */
export function nameFromDisposition(header: string | string[] | undefined): string | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return null;
  try {
    const filename = parseDisposition(value).parameters.filename;
    return filename ? sanitizeFileName(filename) : null;
  } catch {
    // Malformed headers are common; fall back to a lenient look for filename=.
    const m = /filename\s*=\s*"?([^";]+)"?/i.exec(value);
    return m?.[1] ? sanitizeFileName(m[1]) : null;
  }
}
