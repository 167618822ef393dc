import picomatch from 'picomatch';
import { FerryError, isFerryError } from '../../errors.ts';
import type { Entry } from '../../storage/driver.ts';
import { joinPath, TEMP_PREFIX } from '../../storage/paths.ts';
import { type Endpoint, itemError, sameContent } from './transfer.ts';

export type TreeMode = 'copy' | 'move' | 'sync';

/** What a job's run does with two trees (the job's options, as the task payload carries them). */
export interface TreeSpec {
  mode: TreeMode;
  src: Endpoint;
  dst: Endpoint;
  include: readonly string[];
  exclude: readonly string[];
  compare: 'size_mtime' | 'hash';
  conflict: 'overwrite' | 'skip' | 'keep_both';
  maxDelete: number | null;
}

/** One file to copy: `rel` below both roots. */
export interface PlannedCopy {
  rel: string;
  size: number;
  /** A different file of that name is at the destination: replace it (or keep both). */
  replace: boolean;
  /** A folder of that name is at the destination (sync only): it is removed right before the copy. */
  folderInWay: boolean;
  /** The files below that folder: they count as deleted. */
  clears: string[];
  /**
   * Reached through a followed link to a folder at the source (`Entry.link`): the file lives
   * outside the source tree, so a move copies it but deletes nothing there.
   */
  viaLink?: true;
}

/** A file, or a folder emptied by the files before it, to remove at the destination. */
export interface PlannedDelete {
  rel: string;
  isDir: boolean;
}

/** A folder to create at the destination. */
export interface PlannedFolder {
  rel: string;
  /** A file of that name is at the destination (sync only): it is removed first, as a delete. */
  fileInWay: boolean;
}

export interface TreePlan {
  /** Folders to create at the destination, parents first. */
  folders: PlannedFolder[];
  copies: PlannedCopy[];
  /** Files first, each emptied folder after what it held. */
  deletes: PlannedDelete[];
  /** Files identical on both sides, or left alone by `conflict: skip`. */
  skipped: number;
  /**
   * What the run cannot do and reports as failed items: source folders that could not be listed
   * (their destination side is left alone; worth a retry), links at the destination (never
   * written or deleted through; a retry would give the same answer).
   */
  blocked: { rel: string; error: string; retry: boolean }[];
}

/**
 * A destination file newer than its source by up to this much still counts as the same: S3 and
 * WebDAV keep whole seconds, and neither lets a copy set the time, so a destination written
 * right after its source changed can read as up to a second older than it.
 */
const MTIME_SLACK_MS = 1000;

/**
 * Every file the plan deletes: those of the delete phase (folders are removed only once emptied,
 * and not counted), and those removed to make room for a folder or a file of the source.
 */
export function deletedPaths(plan: TreePlan): string[] {
  return [
    ...plan.deletes.filter((d) => !d.isDir).map((d) => d.rel),
    ...plan.folders.filter((f) => f.fileInWay).map((f) => f.rel),
    ...plan.copies.flatMap((c) => c.clears),
  ];
}

export function deletedFiles(plan: TreePlan): number {
  return deletedPaths(plan).length;
}

/**
 * Compare the two trees folder by folder, subfolders side by side with at most
 * `LISTINGS_AT_ONCE` listings in flight (memory holds the listings being compared plus the plan,
 * never the unchanged files of the whole tree), and say what a run would do; nothing is changed. Refuses (`E_SYNC_REFUSED`) what
 * rclone's users lose data to: a source that cannot be listed, a source that is empty while the
 * destination is not, more deletes than `maxDelete`.
 */
export async function planTree(spec: TreeSpec, signal: AbortSignal): Promise<TreePlan> {
  const plan: TreePlan = { folders: [], copies: [], deletes: [], skipped: 0, blocked: [] };
  const filter = pathFilter(spec.include, spec.exclude);
  let srcRoot: Entry[];
  try {
    srcRoot = await spec.src.driver.list(spec.src.path);
  } catch (err) {
    if (spec.mode !== 'sync' && !isFerryError(err, 'E_NOT_FOUND')) throw err;
    throw new FerryError('E_SYNC_REFUSED', `the source cannot be listed: ${itemError(err)}`, { cause: err });
  }
  const dstRoot = await listOrNone(spec.dst);
  if (spec.mode === 'sync') {
    const kept = (entries: Entry[]) =>
      entries.filter((e) => !hidden(e) && !filter.excluded(`/${e.name}`, e.isDir));
    if (kept(srcRoot).length === 0 && kept(dstRoot).length > 0)
      throw new FerryError(
        'E_SYNC_REFUSED',
        'the source is empty while the destination is not: refusing to delete everything',
      );
  }
  const walk: Walk = { spec, filter, plan, signal, listing: new Limiter(LISTINGS_AT_ONCE) };
  await compareFolder(walk, '/', srcRoot, dstRoot, false);
  const deletes = deletedFiles(plan);
  if (spec.mode === 'sync' && spec.maxDelete !== null && deletes > spec.maxDelete)
    throw new FerryError(
      'E_SYNC_REFUSED',
      `the sync would delete ${deletes} files, more than max_delete (${spec.maxDelete})`,
    );
  return plan;
}

async function compareFolder(
  walk: Walk,
  rel: string,
  srcEntries: Entry[],
  dstEntries: Entry[],
  viaLink: boolean,
): Promise<void> {
  const { spec, filter, plan, signal } = walk;
  signal.throwIfAborted();
  const sync = spec.mode === 'sync';
  // Subfolders are compared once this folder is, side by side (listings bounded by `walk.listing`).
  const subfolders: (() => Promise<void>)[] = [];
  const copy = (rel: string, size: number, replace: boolean, clears: string[] | null = null) =>
    plan.copies.push({
      rel,
      size,
      replace,
      folderInWay: clears !== null,
      clears: clears ?? [],
      ...(viaLink && { viaLink: true as const }),
    });
  const dstByName = new Map(dstEntries.filter((e) => !hidden(e)).map((e) => [e.name, e]));
  for (const s of srcEntries) {
    if (hidden(s)) continue;
    const childRel = joinPath(rel, s.name);
    const d = dstByName.get(s.name);
    dstByName.delete(s.name);
    if (filter.excluded(childRel, s.isDir)) continue;
    if (d?.link) {
      // Whatever the destination's link leads to is outside the destination folder: nothing is
      // written or deleted through it.
      plan.blocked.push({ rel: childRel, error: 'a link at the destination is left alone', retry: false });
      continue;
    }
    if (s.isDir) {
      // A file where the source has a folder: a sync replaces it, a copy leaves both alone.
      const fileInWay = d !== undefined && !d.isDir;
      if (fileInWay && !sync) {
        plan.skipped++;
        continue;
      }
      if (!d?.isDir) plan.folders.push({ rel: childRel, fileInWay });
      const dstIsDir = d?.isDir === true;
      const childViaLink = viaLink || s.link === true;
      subfolders.push(async () => {
        let childSrc: Entry[];
        try {
          childSrc = await listed(walk, spec.src, childRel);
        } catch (err) {
          // Whatever the destination holds below it stays: an unreadable folder is not an empty one.
          plan.blocked.push({ rel: childRel, error: itemError(err), retry: true });
          return;
        }
        const childDst = dstIsDir ? await listedOrNone(walk, spec.dst, childRel) : [];
        await compareFolder(walk, childRel, childSrc, childDst, childViaLink);
      });
      continue;
    }
    if (!d) {
      copy(childRel, s.size, false);
    } else if (d.isDir) {
      // A folder where the source has a file: a sync replaces it (when nothing kept is inside).
      const inside: PlannedDelete[] = [];
      if (!sync) plan.skipped++;
      else if (!(await collectDeletes(walk, inside, childRel)))
        plan.blocked.push({
          rel: childRel,
          error: 'a folder holding excluded files is in the way',
          retry: false,
        });
      else
        copy(
          childRel,
          s.size,
          false,
          inside.filter((x) => !x.isDir).map((x) => x.rel),
        );
    } else if (await same(spec, childRel, s, d, signal)) {
      plan.skipped++;
    } else if (spec.conflict === 'skip') {
      plan.skipped++;
    } else {
      copy(childRel, s.size, true);
    }
  }
  if (sync) {
    for (const d of dstByName.values()) {
      const childRel = joinPath(rel, d.name);
      if (filter.excluded(childRel, d.isDir)) continue;
      // A link goes as one entry (removing it removes the link only), never walked into.
      if (d.isDir && !d.link) await collectDeletes(walk, plan.deletes, childRel);
      else plan.deletes.push({ rel: childRel, isDir: false });
    }
  }
  await Promise.all(subfolders.map((compare) => compare()));
}

/**
 * Plan the removal of the destination folder `rel` (absent at the source): every file below it
 * that no filter keeps, then each folder left empty. True when the folder itself goes.
 */
async function collectDeletes(walk: Walk, deletes: PlannedDelete[], rel: string): Promise<boolean> {
  walk.signal.throwIfAborted();
  let emptied = true;
  for (const e of await listed(walk, walk.spec.dst, rel)) {
    const childRel = joinPath(rel, e.name);
    if (hidden(e) || walk.filter.excluded(childRel, e.isDir)) {
      emptied = false;
      continue;
    }
    if (!e.isDir || e.link) deletes.push({ rel: childRel, isDir: false });
    else if (!(await collectDeletes(walk, deletes, childRel))) emptied = false;
  }
  if (emptied) deletes.push({ rel, isDir: true });
  return emptied;
}

/** Whether the destination file is the source's: size, then the time or (`hash`) the bytes. */
async function same(spec: TreeSpec, rel: string, s: Entry, d: Entry, signal: AbortSignal): Promise<boolean> {
  if (s.size !== d.size) return false;
  if (spec.compare === 'hash') {
    return sameContent(
      { driver: spec.src.driver, path: joinPath(spec.src.path, rel) },
      { driver: spec.dst.driver, path: joinPath(spec.dst.path, rel) },
      signal,
    );
  }
  return s.modified <= d.modified + MTIME_SLACK_MS;
}

/** The destination root's entries, none when it does not exist yet. */
async function listOrNone(end: Endpoint): Promise<Entry[]> {
  try {
    return await end.driver.list(end.path);
  } catch (err) {
    if (isFerryError(err, 'E_NOT_FOUND')) return [];
    throw err;
  }
}

/** One planning pass: what it compares, what it found so far, and how many listings may run at once. */
interface Walk {
  spec: TreeSpec;
  filter: PathFilter;
  plan: TreePlan;
  signal: AbortSignal;
  listing: Limiter;
}

/**
 * Listings in flight at once while planning: rclone's `--checkers` default. Folders are compared
 * side by side so a remote backend's round trips overlap; the bound keeps a wide tree from
 * opening a request per folder at once.
 */
const LISTINGS_AT_ONCE = 8;

/** At most `max` calls at a time; the others wait their turn in order. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await call();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** The folder `rel` (below the end's root) listed, within the walk's bound. */
function listed(walk: Walk, end: Endpoint, rel: string): Promise<Entry[]> {
  walk.signal.throwIfAborted();
  return walk.listing.run(() => end.driver.list(rel === '/' ? end.path : joinPath(end.path, rel)));
}

async function listedOrNone(walk: Walk, end: Endpoint, rel: string): Promise<Entry[]> {
  try {
    return await listed(walk, end, rel);
  } catch (err) {
    if (isFerryError(err, 'E_NOT_FOUND')) return [];
    throw err;
  }
}

/** A write in flight (ours or another task's): never compared, copied or deleted. */
function hidden(e: Entry): boolean {
  return e.name.startsWith(TEMP_PREFIX);
}

interface PathFilter {
  /** Whether the entry at `rel` (relative to the roots, starting with `/`) is left alone. */
  excluded(rel: string, isDir: boolean): boolean;
}

/**
 * `include`/`exclude` globs (picomatch) over paths relative to the job's folders, without the
 * leading `/`: `*.tmp` matches at any depth (basename match when the glob has no `/`), `cache/**`
 * or `cache` a folder and all below it. `include` narrows the files; folders are always walked.
 */
function pathFilter(include: readonly string[], exclude: readonly string[]): PathFilter {
  const options = { dot: true };
  const compile = (globs: readonly string[]) => {
    if (globs.length === 0) return null;
    const full = picomatch(globs as string[], options);
    const bare = globs.filter((g) => !g.includes('/'));
    const base = bare.length > 0 ? picomatch(bare, { ...options, basename: true }) : null;
    return (path: string) => full(path) || (base?.(path) ?? false);
  };
  const ex = compile(exclude);
  const inc = compile(include);
  return {
    excluded(rel, isDir) {
      const path = rel.slice(1);
      if (ex && (ex(path) || (isDir && ex(`${path}/`)))) return true;
      return !isDir && inc !== null && !inc(path);
    },
  };
}

/** Check globs once where they enter (job create/update): `E_BAD_REQUEST` for a bad one. */
export function checkGlobs(globs: readonly string[], field: string): void {
  for (const g of globs) {
    try {
      picomatch.makeRe(g);
    } catch (err) {
      throw new FerryError('E_BAD_REQUEST', `${field}: invalid glob "${g}"`, { cause: err });
    }
  }
}
