/*
 * Where a Local driver path lands on disk, and the checks that keep it inside the root: each part
 * lstat'ed and each link on the way resolved inside the real root (folders that passed are trusted
 * for a second), a link at the path itself reported for the caller to decide, and link loops found.
 */
import { lstatSync, realpathSync, type Stats, statSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { FerryError, fromFsError } from '../../errors.ts';
import { normalizePath } from '../paths.ts';

/**
 * A folder found inside the root is not checked again for this long: a tree copy looks at the same
 * folders for every file in them. A link put in place of a checked folder within this time is the
 * race the class comment accepts, made at most this much longer.
 */
const CHECKED_DIR_MS = 1000;
/** The remembered folders are forgotten all at once beyond this many. */
const CHECKED_DIRS_MAX = 4096;

/** Errors of a path lookup that mean "nothing (reachable) there" rather than a failure. */
export const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

/** Where a driver path lands on disk, once its ancestors are known to stay inside the root. */
export interface Located {
  /** The normalised driver path. */
  path: string;
  abs: string;
  /** What is there (for a link that stays inside the root, its target); null when nothing is. */
  info: Stats | null;
  /** The link's own lstat when `path` itself is a link that leads out of the root or nowhere. */
  escapingLink: Stats | null;
  /** `path` itself is a link that stays inside the root (`info` is its target's). */
  link?: true;
}

/**
 * The paths of one `LocalDriver`, checked here whatever the caller did (see the driver's comment
 * for what is refused).
 *
 * The checks and the file operations are separate system calls: someone with write access to
 * the folder itself could swap a folder for a link in between. We accept that race: the root
 * belongs to ferry, and the check exists to stop links placed in advance and paths from users.
 * The checks (realpath of the nearest existing ancestor, lstat of the path) are synchronous, as
 * `localPath` has to be anyway: on a local disk they take microseconds, while as thread-pool round
 * trips each cost ten times that in CPU and they were most of the engine's time per small file.
 * Everything that moves bytes or lists folders stays asynchronous.
 */
export class SafePaths {
  private readonly rootPrefix: string;
  /** Folders found inside the root by `checkAncestors`, until when (`performance.now()`). */
  private readonly checkedDirs = new Map<string, number>();

  /** `root` is the real path of the driver's folder. */
  constructor(readonly root: string) {
    this.rootPrefix = root.endsWith(sep) ? root : root + sep;
  }

  /** `LocalDriver.localPath`: the absolute path behind `path`, checked like every other one. */
  localPath(path: string, options?: { newName?: boolean }): string {
    const rel = normalizePath(path);
    const abs = this.abs(rel);
    if (abs === this.root) return abs;
    this.checkAncestors(dirname(abs), rel);
    if (options?.newName) return abs;
    if (lookupSync(() => lstatSync(abs), rel)?.isSymbolicLink()) {
      const target = lookupSync(() => realpathSync.native(abs), rel);
      if (target === null || !this.inside(target)) throw outside(rel);
    }
    return abs;
  }

  /** The absolute path of a normalised driver path, unchecked. */
  abs(normalised: string): string {
    return normalised === '/' ? this.root : join(this.root, normalised);
  }

  /**
   * Whether the folder at `at` was reached through a link that leads back into a folder on its own
   * path (a link to an ancestor, or links that lead to each other): listing it would make every
   * walk of the tree endless, a copy nesting the same folders until names grow too long. Only a
   * path that passes through a link is looked at further: one realpath per folder on it.
   */
  loops(at: Located): boolean {
    const real = lookupSync(() => realpathSync.native(at.abs), at.path);
    if (real === null || real === at.abs) return false;
    const seen = new Set([this.root]);
    let abs = this.root;
    for (const name of at.path.split('/')) {
      if (name === '') continue;
      abs = join(abs, name);
      const folder = lookupSync(() => realpathSync.native(abs), at.path);
      if (folder === null) return false;
      if (seen.has(folder)) return true;
      seen.add(folder);
    }
    return false;
  }

  inside(real: string): boolean {
    return real === this.root || real.startsWith(this.rootPrefix);
  }

  /**
   * Normalise `path`, check that its nearest existing ancestor is really inside the root, and
   * look at what is there. A link at `path` itself is reported, not refused: callers decide.
   */
  locate(path: string): Located {
    const rel = normalizePath(path);
    const abs = this.abs(rel);
    if (abs !== this.root) this.checkAncestors(dirname(abs), rel);
    const own = lookupSync(() => lstatSync(abs, { throwIfNoEntry: false }) ?? null, rel);
    if (!own?.isSymbolicLink()) return { path: rel, abs, info: own, escapingLink: null };
    const target = lookupSync(() => realpathSync.native(abs), rel);
    if (target === null || !this.inside(target)) return { path: rel, abs, info: null, escapingLink: own };
    return { path: rel, abs, info: lookupSync(() => statSync(target), rel), escapingLink: null, link: true };
  }

  /** `locate`, refusing a link at `path` that leads out of the root (or nowhere). */
  confined(path: string): Located {
    const at = this.locate(path);
    if (at.escapingLink) throw outside(at.path);
    return at;
  }

  /** `confined`, and `E_NOT_FOUND` when nothing is there. */
  existing(path: string): Located & { info: Stats } {
    const at = this.confined(path);
    if (!at.info) throw new FerryError('E_NOT_FOUND', `not found: ${at.path}`);
    return at as Located & { info: Stats };
  }

  /**
   * The nearest existing folder at or above `dir` must really be inside the root. The root is a
   * real path, so only the parts below it are looked at, from the root down: one lstat each, and
   * each link met must resolve inside the root (a dangling one is refused: its target could be
   * created outside later). Far fewer calls than resolving the whole path, which is what a tiny
   * copy is made of; and a folder that passed is trusted for `CHECKED_DIR_MS`.
   */
  private checkAncestors(dir: string, rel: string): void {
    if (dir === this.root) return;
    const now = performance.now();
    if ((this.checkedDirs.get(dir) ?? 0) > now) return;
    let probe = this.root;
    for (const part of dir.slice(this.rootPrefix.length).split(sep)) {
      probe = probe + sep + part;
      const info = lookupSync(() => lstatSync(probe, { throwIfNoEntry: false }) ?? null, rel);
      if (info === null) return; // everything above is inside, and nothing is below
      if (!info.isSymbolicLink()) continue;
      const real = lookupSync(() => realpathSync.native(probe), rel);
      if (real === null || !this.inside(real)) throw outside(rel);
    }
    if (this.checkedDirs.size >= CHECKED_DIRS_MAX) this.checkedDirs.clear();
    this.checkedDirs.set(dir, now + CHECKED_DIR_MS);
  }
}

/** The result of a lookup, or null when nothing (reachable) is there; other errors are mapped. */
function lookupSync<T>(fn: () => T, path: string): T | null {
  try {
    return fn();
  } catch (err) {
    if (MISSING.has((err as NodeJS.ErrnoException).code ?? '')) return null;
    throw fromFsError(err, path);
  }
}

function outside(path: string): FerryError {
  return new FerryError('E_PATH_OUTSIDE_ROOT', `path leaves the storage root: ${path}`);
}
