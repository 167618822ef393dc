import { FerryError } from '../../errors.ts';
import { normalizePath } from '../../storage/paths.ts';
import { bracketed, type Locate, type TaskDefinition } from './task-definition.ts';

/**
 * Payload of a job's run (a `sync` task, or a `copy`/`move` task made by a job): the job's
 * folders and options, copied into the task so a run does what the job said when it started.
 * `result` is written by the run itself (its counts, for the job's `runs`).
 */
export type TreeRunPayload = {
  job: { id: string; name: string };
  mode: 'copy' | 'move' | 'sync';
  srcDir: string;
  dstDir: string;
  include: string[];
  exclude: string[];
  compare: 'size_mtime' | 'hash';
  conflict: 'overwrite' | 'skip' | 'keep_both';
  maxDelete: number | null;
};

/** True for the payload of a job's run (a copy or move task from `/api/fs` has none). */
export function isTreeRun(payload: Readonly<Record<string, unknown>>): boolean {
  return typeof payload.job === 'object' && payload.job !== null;
}

/** Check a job run's payload (submitted or stored): `E_BAD_REQUEST` when it is not one. */
export function readTreeRun(p: Readonly<Record<string, unknown>>): TreeRunPayload {
  const bad = (what: string) => new FerryError('E_BAD_REQUEST', `payload: ${what}`);
  const job = p.job as { id?: unknown; name?: unknown } | undefined;
  if (typeof job !== 'object' || job === null || typeof job.id !== 'string')
    throw bad('job must name its job');
  const mode = p.mode;
  if (mode !== 'copy' && mode !== 'move' && mode !== 'sync') throw bad('mode must be copy, move or sync');
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((g): g is string => typeof g === 'string') : [];
  return {
    job: { id: job.id, name: typeof job.name === 'string' ? job.name : '' },
    mode,
    srcDir: normalizePath(p.srcDir),
    dstDir: normalizePath(p.dstDir),
    include: strings(p.include),
    exclude: strings(p.exclude),
    compare: p.compare === 'hash' ? 'hash' : 'size_mtime',
    conflict: p.conflict === 'skip' || p.conflict === 'keep_both' ? p.conflict : 'overwrite',
    maxDelete: typeof p.maxDelete === 'number' ? p.maxDelete : null,
  };
}

/** `sync [/local](/photos) to [/s3](/backup)`, and `copy …`/`move …` for those jobs' runs. */
export function treeRunName(p: TreeRunPayload, locate: Locate): string {
  return `${p.mode} ${bracketed(locate(p.srcDir))} to ${bracketed(locate(p.dstDir))}`;
}

export const syncDefinition: TaskDefinition<'sync', TreeRunPayload> = {
  kind: 'sync',
  read: readTreeRun,
  name: treeRunName,
};
