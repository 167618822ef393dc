import type { ArchiveListing } from '../archive/formats.ts';
import { type ArchiveFormat, type ExtractionGuard, extractArchive, listArchive } from '../archive/index.ts';
import { FerryError } from '../errors.ts';
import type { Endpoint } from './driver.ts';
import { LocalTree } from './local/extract-tree.ts';
import { baseName, joinPath } from './paths.ts';
import { copyBetween } from './transfer.ts';

export interface ExtractOptions {
  format: ArchiveFormat;
  /** The archive's size (to cache a remote one). */
  size: number;
  password: string;
  /** Only this folder or file of the archive (`/` for all). */
  innerPath: string;
  signal: AbortSignal;
  guard: ExtractionGuard;
  /** Replace files already at the destination (a temp tree for an upload replaces anything). */
  overwrite: boolean;
  /** Temp names derive from it, so a retry replaces its own leftovers (a task's id). */
  tempKey: string;
  /** Flush what was extracted to disk before returning; false leaves that to the OS. */
  sync: boolean;
  /** The archive is being copied to the work folder (`caching`), or extracted. */
  onStage(stage: 'caching' | 'extracting'): void;
  /** Totals as far as the format tells them up front. */
  setTotals(totals: { bytes?: number; files?: number }): void;
  /** Bytes written (progress). */
  onBytes(n: number): void;
  /** Progress for formats that count archive bytes read rather than bytes written. */
  onArchiveBytes(n: number): void;
  onFileDone(): void;
  /** An entry that could not be placed (exists, a folder in the way); extraction goes on. */
  onItemFailed(rel: string, err: FerryError): void;
  /** A link entry inside the archive, not created. */
  onSkippedLink(rel: string): void;
  /**
   * Awaited right before each file takes its final name at a Local destination
   * (`WriteOptions.beforePlace`); a temp tree for an upload is private and not guarded.
   */
  beforePlace?: () => Promise<void>;
}

/**
 * The entries of the archive `src` without extracting it (see `listArchive`). A remote archive
 * is first copied into `work` (a private folder of the data area, removed afterwards); a Local
 * one is read where it is.
 */
export async function listArchiveAt(
  src: Endpoint,
  work: Endpoint,
  options: { format: ArchiveFormat; size: number; password: string; signal: AbortSignal },
): Promise<ArchiveListing> {
  const { signal } = options;
  const here = src.driver.localPath(src.path);
  if (here) return listArchive(here, options.format, options.password, signal);
  const cached = { driver: work.driver, path: joinPath(work.path, baseName(src.path)) };
  try {
    await work.driver.mkdir(work.path);
    await copyBetween(src, cached, options.size, {
      signal,
      overwrite: true,
      tempKey: 'listing',
      sync: false,
      onProgress: () => undefined,
    });
    const file = work.driver.localPath(cached.path);
    if (file === null) throw new FerryError('E_INTERNAL', `not on the local disk: ${cached.path}`);
    return await listArchive(file, options.format, options.password, signal);
  } finally {
    await work.driver.remove(work.path).catch(() => undefined);
  }
}

/**
 * Extract the archive `src` into the folder `dst`. The archive readers need the archive on the
 * local disk and write to a local folder: a remote archive is first copied into `work` (a
 * private folder of the data area); a Local destination receives the files directly, through
 * the Local driver's path checks (each file under a temp name, placed when complete, no link
 * followed out of the folder); any other destination gets them in a tree inside `work`, whose
 * endpoint is returned for an upload to copy (null when the files are in place at `dst`).
 * Returns, or throws, only once every write it started has ended.
 */
export async function extractTo(
  src: Endpoint,
  dst: Endpoint,
  work: Endpoint,
  options: ExtractOptions,
): Promise<Endpoint | null> {
  const { signal } = options;
  const local = (at: Endpoint): string => {
    const path = at.driver.localPath(at.path);
    if (path === null) throw new FerryError('E_INTERNAL', `not on the local disk: ${at.path}`);
    return path;
  };
  let file = src.driver.localPath(src.path);
  if (!file) {
    options.onStage('caching');
    const cached = { driver: work.driver, path: joinPath(work.path, `archive-${baseName(src.path)}`) };
    await work.driver.mkdir(work.path);
    // A cache only: nothing else depends on it surviving a crash.
    await copyBetween(src, cached, options.size, {
      signal,
      overwrite: true,
      tempKey: options.tempKey,
      sync: false,
      onProgress: () => undefined,
    });
    file = local(cached);
  }
  options.onStage('extracting');
  const direct = dst.driver.localPath(dst.path) !== null;
  if (direct) await dst.driver.mkdir(dst.path);
  const tree = direct ? dst : { driver: work.driver, path: joinPath(work.path, 'tree') };
  const writer = await LocalTree.open(local(tree), {
    // The temp tree is private: only the upload decides about the destination's files.
    overwrite: direct ? options.overwrite : true,
    tempKey: options.tempKey,
    signal,
    guard: options.guard,
    onBytes: options.onBytes,
    onFileDone: options.onFileDone,
    onItemFailed: options.onItemFailed,
    ...(direct && options.beforePlace && { beforePlace: options.beforePlace }),
  });
  await extractArchive(options.format, {
    file,
    password: options.password,
    innerPath: options.innerPath,
    signal,
    guard: options.guard,
    tree: writer,
    stageDir: local({ driver: work.driver, path: joinPath(work.path, 'stage') }),
    setTotals: options.setTotals,
    onArchiveBytes: options.onArchiveBytes,
    onSkippedLink: options.onSkippedLink,
  });
  // One syncfs of the file system, not an fsync per file, which would cost more than the writes.
  await (options.sync ? writer.flush() : writer.settle());
  return direct ? null : tree;
}
