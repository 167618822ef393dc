import { normalizePath } from '../../storage/paths.ts';
import { bracketed, type TaskDefinition } from './task-definition.ts';

/** Input of a decompress task. */
export type DecompressPayload = {
  /** Virtual path of the archive. */
  src: string;
  /** Virtual path of the destination folder. */
  dstDir: string;
  password: string;
  /** Only this folder or file of the archive (`/` for all). */
  innerPath: string;
  /** Extract into a new folder named after the archive (without its ending). */
  putIntoNewDir: boolean;
  overwrite: boolean;
};

/**
 * The seed's name: `decompress [<mount>](<path>)[<inner path>] to [<mount>](<path>) with password
 * <<password>>` (the angle brackets are written, as AList writes them and the OpenList UI parses
 * them). The password shows in the name as in AList: only its creator and admins ever see a task,
 * and the task keeps the password anyway, to extract (and retry) without asking again.
 */
export const decompressDefinition: TaskDefinition<'decompress', DecompressPayload> = {
  kind: 'decompress',
  read: (p) => ({
    src: normalizePath(p.src),
    dstDir: normalizePath(p.dstDir),
    password: typeof p.password === 'string' ? p.password : '',
    innerPath: normalizePath(typeof p.innerPath === 'string' ? p.innerPath : '/'),
    putIntoNewDir: p.putIntoNewDir === true,
    overwrite: p.overwrite === true,
  }),
  name: (p, locate) =>
    `decompress ${bracketed(locate(p.src))}[${p.innerPath}] to ${bracketed(locate(p.dstDir))} with password <${p.password}>`,
};

/** Input of a decompress_upload task: the tree a decompress task extracted, bound for `dstDir`. */
export type DecompressUploadPayload = {
  /** Virtual path of the destination folder. */
  dstDir: string;
  overwrite: boolean;
  /** The archive's file name, for the task's name. */
  archive: string;
};

export const decompressUploadDefinition: TaskDefinition<'decompress_upload', DecompressUploadPayload> = {
  kind: 'decompress_upload',
  read: (p) => ({
    dstDir: normalizePath(p.dstDir),
    overwrite: p.overwrite === true,
    archive: typeof p.archive === 'string' ? p.archive : '',
  }),
  // The seed's naming: `upload <file name> to [<mount>](<path in driver>)`.
  name: (p, locate) => `upload ${p.archive} to ${bracketed(locate(p.dstDir))}`,
};
