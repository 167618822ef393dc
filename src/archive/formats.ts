import type { LocalTree } from '../storage/local/extract-tree.ts';
import type { ExtractionGuard } from './guard.ts';

/** The archive formats ferry reads. */
export type ArchiveFormat = 'zip' | 'tar' | 'tar.gz' | 'tar.bz2' | 'tar.xz' | 'tar.zst' | '7z' | 'rar';

/** Name endings, longest first, and the format each means. */
const ENDINGS: readonly [string, ArchiveFormat][] = [
  ['.tar.gz', 'tar.gz'],
  ['.tar.bz2', 'tar.bz2'],
  ['.tar.xz', 'tar.xz'],
  ['.tar.zst', 'tar.zst'],
  ['.tgz', 'tar.gz'],
  ['.tbz2', 'tar.bz2'],
  ['.tbz', 'tar.bz2'],
  ['.txz', 'tar.xz'],
  ['.tzst', 'tar.zst'],
  ['.tar', 'tar'],
  ['.zip', 'zip'],
  ['.7z', '7z'],
  ['.rar', 'rar'],
];

/** The name endings ferry reads as archives (`.zip`, `.tar.gz`, …), lower case, longest first. */
export function archiveEndings(): string[] {
  return ENDINGS.map(([ending]) => ending);
}

/** The format a file name says, or null when it names none ferry reads. */
export function formatOf(name: string): ArchiveFormat | null {
  const lower = name.toLowerCase();
  return ENDINGS.find(([ending]) => lower.endsWith(ending))?.[1] ?? null;
}

/** The name without its archive ending (`photos.tar.gz` → `photos`): `put_into_new_dir`'s folder. */
export function archiveStem(name: string): string {
  const lower = name.toLowerCase();
  const ending = ENDINGS.find(([e]) => lower.endsWith(e))?.[0];
  const stem = ending ? name.slice(0, name.length - ending.length) : name;
  return stem === '' || stem === '.' || stem === '..' ? 'archive' : stem;
}

/** One entry of an archive, its path checked and normalised (`/a/b.txt`). */
export interface ArchiveEntry {
  path: string;
  isDir: boolean;
  /** Uncompressed size as the archive states it (informative; never trusted for limits). */
  size: number;
  /** Modification time in ms since the epoch (0 when unknown). */
  modified: number;
}

export interface ArchiveListing {
  entries: ArchiveEntry[];
  encrypted: boolean;
  comment: string;
}

/** What extracting one archive needs. */
export interface ExtractJob {
  /** Local path of the archive file. */
  file: string;
  password: string;
  /** Only this folder or file of the archive (`/` for all); it lands under its own name. */
  innerPath: string;
  signal: AbortSignal;
  guard: ExtractionGuard;
  tree: LocalTree;
  /** A private scratch folder (external tools extract there first). */
  stageDir: string;
  /** Totals as far as the format tells them up front. */
  setTotals(totals: { bytes?: number; files?: number }): void;
  /** Progress for formats that count archive bytes read rather than bytes written. */
  onArchiveBytes?(n: number): void;
  /** A link entry that stays inside the destination: not created (no driver has links). */
  onSkippedLink(rel: string): void;
}

/**
 * Where an entry lands relative to the output folder when only `innerPath` is extracted
 * (`/a/b` → `/b/...`), or null when it lies outside `innerPath`.
 */
export function selectEntry(innerPath: string, path: string): string | null {
  if (innerPath === '/') return path;
  if (path !== innerPath && !path.startsWith(`${innerPath}/`)) return null;
  const name = innerPath.slice(innerPath.lastIndexOf('/'));
  return name + path.slice(innerPath.length);
}
