import type { Principal } from '../auth/roles.ts';
import { joinPath, normalizePath } from '../storage/paths.ts';

/**
 * A user's path (relative to their base path) as a virtual path, refusing traversal:
 * `E_INVALID_PATH` for a non-string, `E_PATH_OUTSIDE_ROOT` for a `..` segment.
 */
export function toVirtual(principal: Principal, userPath: unknown): string {
  return joinPath(principal.basePath, normalizePath(userPath));
}

/** `name` in the folder `dir` (both as the store has them: `dir` normalised, `name` one segment). */
export function childPath(dir: string, name: string): string {
  return `${dir === '/' ? '' : dir}/${name}`;
}
