import { posix } from 'node:path';
import type { ArchiveLimits } from '../config.ts';
import { FerryError } from '../errors.ts';
import { normalizePath } from '../storage/paths.ts';

/**
 * The path of an archive entry as a normalised relative path (`/a/b.txt`), or `E_ARCHIVE_UNSAFE`
 * when it would leave the extraction folder: absolute names (`/etc/x`, `C:\x`, `\\host\x`) and
 * any `..` segment are refused, never resolved. Backslashes count as separators, as Windows tools
 * write them.
 */
export function entryPath(raw: string): string {
  const name = raw.replaceAll('\\', '/');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name))
    throw new FerryError('E_ARCHIVE_UNSAFE', `archive entry has an absolute path: ${JSON.stringify(raw)}`);
  if (name.split('/').includes('..'))
    throw new FerryError('E_ARCHIVE_UNSAFE', `archive entry leaves the destination: ${JSON.stringify(raw)}`);
  try {
    return normalizePath(name);
  } catch (err) {
    throw new FerryError('E_ARCHIVE_UNSAFE', `bad archive entry name ${JSON.stringify(raw)}`, { cause: err });
  }
}

/**
 * Check a link entry: its target, taken relative to the link's folder, must stay inside the
 * extraction root. Returns the target as a normalised relative path; `E_ARCHIVE_UNSAFE` otherwise.
 */
export function linkTarget(entry: string, target: string): string {
  const t = target.replaceAll('\\', '/');
  if (t.startsWith('/') || /^[A-Za-z]:/.test(t))
    throw new FerryError('E_ARCHIVE_UNSAFE', `link ${entry} points outside the destination: ${target}`);
  const resolved = posix.normalize(posix.join(posix.dirname(entry), t));
  if (resolved === '..' || resolved.startsWith('../') || resolved.startsWith('/..'))
    throw new FerryError('E_ARCHIVE_UNSAFE', `link ${entry} points outside the destination: ${target}`);
  return normalizePath(resolved);
}

/**
 * Counts what an extraction writes and stops it past the configured limits. Bytes are counted as
 * they are written, whatever the headers claimed, so a lying header cannot get past.
 */
export class ExtractionGuard {
  bytes = 0;
  entries = 0;

  constructor(
    private readonly limits: ArchiveLimits,
    /** Size of the archive file, for the compression ratio. */
    private readonly archiveSize: number,
  ) {}

  /** One more entry (file, folder or link). */
  entry(): void {
    this.entries++;
    if (this.entries > this.limits.maxEntries)
      throw new FerryError('E_ARCHIVE_LIMIT', `archive has more than ${this.limits.maxEntries} entries`);
  }

  /** `n` more bytes written. */
  wrote(n: number): void {
    this.bytes += n;
    this.check();
  }

  /** Replace the byte count (an external extractor's output, measured on disk). */
  measured(bytes: number, entries: number): void {
    this.bytes = bytes;
    this.check();
    if (entries > this.limits.maxEntries)
      throw new FerryError('E_ARCHIVE_LIMIT', `archive has more than ${this.limits.maxEntries} entries`);
  }

  private check(): void {
    const { maxTotalBytes, maxRatio, ratioGraceBytes } = this.limits;
    if (this.bytes > maxTotalBytes)
      throw new FerryError('E_ARCHIVE_LIMIT', `extraction passed the limit of ${maxTotalBytes} bytes`);
    if (this.bytes > ratioGraceBytes && this.bytes > maxRatio * Math.max(1, this.archiveSize)) {
      throw new FerryError(
        'E_ARCHIVE_LIMIT',
        `extraction passed ${maxRatio} bytes per archive byte (a zip bomb?)`,
      );
    }
  }
}
