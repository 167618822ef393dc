import type { TaskKind } from '../../config.ts';
import { FerryError } from '../../errors.ts';

/** Where a virtual path lies: the mount holding it and the path inside that mount. */
export interface Location {
  /** The mount's path in the virtual tree, e.g. `/local`. */
  mountPath: string;
  /** The path inside the mount (`/` for its root). */
  path: string;
}

/** Resolve a virtual path to its mount (`MountRegistry.resolve` is one). */
export type Locate = (virtualPath: string) => Location;

/**
 * One task kind's contract, shared by whoever creates such tasks (the dialects, a parent task) and
 * the kind that runs them, so the two cannot disagree on a field:
 * - `read` checks a payload (submitted or stored) and gives it back typed and normalised; a payload
 *   that is not one is `E_BAD_REQUEST`, which fails a stored task at once (retrying cannot help);
 * - `name` spells the task's name as the seed's naming section does.
 */
export interface TaskDefinition<K extends TaskKind, P> {
  readonly kind: K;
  read(payload: Readonly<Record<string, unknown>>): P;
  name(payload: P, locate: Locate): string;
}

/** `[mount](inner path)` as the seed's task names spell a location. */
export function bracketed(where: Location): string {
  return `[${where.mountPath}](${where.path})`;
}

/** A payload field that must be a string. */
export function stringField(payload: Readonly<Record<string, unknown>>, key: string): string {
  const value = payload[key];
  if (typeof value !== 'string') throw new FerryError('E_BAD_REQUEST', `payload: ${key} must be a string`);
  return value;
}
