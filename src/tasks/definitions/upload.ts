import { join } from 'node:path';
import { FerryError } from '../../errors.ts';
import { baseName, normalizePath, parentPath } from '../../storage/paths.ts';
import { bracketed, type TaskDefinition } from './task-definition.ts';

/** Input of an upload task; the body itself waits in the spool (`spoolPath`). */
export type UploadPayload = {
  /** Virtual path of the file to write. */
  dst: string;
  overwrite: boolean;
  /** The file's modification time (ms), from the upload's `Last-Modified`, when given. */
  modified?: number;
};

export const uploadDefinition: TaskDefinition<'upload', UploadPayload> = {
  kind: 'upload',
  read: (p) => ({
    dst: normalizePath(p.dst),
    overwrite: p.overwrite === true,
    ...(typeof p.modified === 'number' && Number.isFinite(p.modified) && { modified: p.modified }),
  }),
  // The seed's `upload <file name> to [<mount>](<folder>)`.
  name: (p, locate) => {
    const where = locate(p.dst);
    return `upload ${baseName(p.dst)} to ${bracketed({ mountPath: where.mountPath, path: parentPath(where.path) })}`;
  },
};

/**
 * Where an upload's body waits, in the staging directory (`Config.stagingDir`), until its task
 * writes it to storage: the receiving side writes it there under the task's id before the task
 * exists, the kind reads it.
 */
export function spoolPath(stagingDir: string, taskId: string): string {
  if (!/^[\w-]+$/.test(taskId)) throw new FerryError('E_BAD_REQUEST', 'bad task id');
  return join(stagingDir, 'spool', taskId);
}
