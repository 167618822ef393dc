import { baseName, checkName, normalizePath } from '../../storage/paths.ts';
import { bracketed, type Locate, type TaskDefinition } from './task-definition.ts';

/** Input of a copy or move task: one source item into a destination folder. */
export type CopyPayload = {
  /** Virtual path of the file or folder to copy. */
  src: string;
  /** Virtual path of the destination folder. */
  dstDir: string;
  overwrite: boolean;
  /** Skip a destination file of the same name and size instead of failing. */
  skipExisting: boolean;
  /** When the destination name is taken, use a free one (`name (1).ext`): efile's `both`. */
  keepBoth: boolean;
  /** The destination name chosen for `keepBoth`, kept so a resumed task writes to the same one. */
  dstName?: string;
};

function readCopy(p: Readonly<Record<string, unknown>>): CopyPayload {
  return {
    src: normalizePath(p.src),
    dstDir: normalizePath(p.dstDir),
    overwrite: p.overwrite === true,
    skipExisting: p.skipExisting === true,
    keepBoth: p.keepBoth === true,
    ...(typeof p.dstName === 'string' && { dstName: checkName(p.dstName) }),
  };
}

/** The seed's `copy [/src](/a/b.txt) to [/dst](/c)` (and `move …`). */
const transferName = (verb: string) => (p: CopyPayload, locate: Locate) =>
  `${verb} ${bracketed(locate(p.src))} to ${bracketed(locate(p.dstDir))}`;

export const copyDefinition: TaskDefinition<'copy', CopyPayload> = {
  kind: 'copy',
  read: readCopy,
  name: transferName('copy'),
};

export const moveDefinition: TaskDefinition<'move', CopyPayload> = {
  kind: 'move',
  read: readCopy,
  name: transferName('move'),
};

/** The name the item gets in its destination folder. */
export function copyTargetName(p: CopyPayload): string {
  return p.dstName ?? baseName(p.src);
}
