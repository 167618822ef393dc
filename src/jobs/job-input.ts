import { FerryError } from '../errors.ts';
import type { JobCompare, JobConflict, JobFields, JobMode } from '../store/job-store.ts';
import { checkGlobs } from '../tasks/kinds/sync-plan.ts';
import { readSchedule } from './schedule.ts';

/** A job as a caller describes it (create, update), checked; folders already virtual paths. */
export type JobInput = JobFields;

const MODES: readonly JobMode[] = ['copy', 'move', 'sync'];
const COMPARES: readonly JobCompare[] = ['size_mtime', 'hash'];
const CONFLICTS: readonly JobConflict[] = ['overwrite', 'skip', 'keep_both'];
/** Most globs in `include` or `exclude`. */
const MAX_GLOBS = 100;

/**
 * Read a job from the API's JSON body (`name, mode, src_dir, dst_dir, include?, exclude?,
 * compare?, conflict?, max_delete?, schedule?, enabled?`). `toVirtual` turns the caller's paths
 * into virtual ones (their base path, traversal refused). `E_BAD_REQUEST` names the bad field.
 */
export function readJobInput(body: unknown, toVirtual: (path: unknown) => string): JobInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw bad('body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 200)
    throw bad('name must be a non-empty string of at most 200 characters');
  const mode = oneOf(b.mode, MODES, 'mode', undefined);
  if (b.src_dir === undefined || b.dst_dir === undefined) throw bad('src_dir and dst_dir are required');
  const conflict = oneOf(b.conflict, CONFLICTS, 'conflict', 'overwrite');
  // A sync makes the destination equal to the source: a second name for a changed file is not that.
  if (mode === 'sync' && conflict === 'keep_both') throw bad('conflict keep_both does not apply to sync');
  const maxDelete = b.max_delete ?? null;
  if (maxDelete !== null && !(Number.isInteger(maxDelete) && (maxDelete as number) >= 0))
    throw bad('max_delete must be a non-negative integer');
  if (b.enabled !== undefined && typeof b.enabled !== 'boolean') throw bad('enabled must be true or false');
  return {
    name: b.name.trim(),
    mode,
    srcDir: toVirtual(b.src_dir),
    dstDir: toVirtual(b.dst_dir),
    options: {
      include: globs(b.include, 'include'),
      exclude: globs(b.exclude, 'exclude'),
      compare: oneOf(b.compare, COMPARES, 'compare', 'size_mtime'),
      conflict,
      maxDelete: maxDelete as number | null,
    },
    schedule: readSchedule(b.schedule),
    enabled: b.enabled !== false,
  };
}

function oneOf<T extends string>(
  value: unknown,
  allowed: readonly T[],
  field: string,
  fallback: T | undefined,
): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value))
    throw bad(`${field} must be one of: ${allowed.join(', ')}`);
  return value as T;
}

function globs(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (
    !Array.isArray(value) ||
    value.length > MAX_GLOBS ||
    value.some((g) => typeof g !== 'string' || g === '')
  )
    throw bad(`${field} must be an array of at most ${MAX_GLOBS} non-empty glob strings`);
  checkGlobs(value as string[], field);
  return value as string[];
}

function bad(message: string): FerryError {
  return new FerryError('E_BAD_REQUEST', message);
}
