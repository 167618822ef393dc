import { normalizePath } from '../../storage/paths.ts';
import { bracketed, type TaskDefinition } from './task-definition.ts';

/** Input of a delete task: one file or folder. */
export type DeletePayload = {
  /** Virtual path of the item. */
  path: string;
};

export const deleteDefinition: TaskDefinition<'delete', DeletePayload> = {
  kind: 'delete',
  read: (p) => ({ path: normalizePath(p.path) }),
  name: (p, locate) => `delete ${bracketed(locate(p.path))}`,
};
