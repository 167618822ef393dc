import type { Principal } from '../../auth/roles.ts';
import type { ErrorCode } from '../../errors.ts';
import { isWithin, relativeTo } from '../../storage/paths.ts';
import { progressOf, type Task, type TaskState } from '../../tasks/model.ts';

/** efile's codes (strings, as in the seeds) for ferry's error codes. */
const CODES: Partial<Record<ErrorCode, string>> = {
  E_BAD_REQUEST: '10004',
  E_INVALID_PATH: '10004',
  E_NOT_FOUND: '911020',
  E_NO_STORAGE: '911020',
  E_EXISTS: '911021',
  E_NOT_A_DIRECTORY: '911022',
  E_SAME_PATH: '911507',
  E_FORBIDDEN: '911030',
  E_GUEST: '911030',
  E_PATH_OUTSIDE_ROOT: '911030',
  E_UNAUTHORIZED: '911406',
  E_NO_SPACE: '911501',
};

export function efileCode(code: string): string {
  return CODES[code as ErrorCode] ?? '10001';
}

/** efile's five statuses over ferry's ten states. */
export function efileStatus(state: TaskState): 'waiting' | 'processing' | 'cancel' | 'complete' | 'fail' {
  switch (state) {
    case 'pending':
    case 'waiting_retry':
    case 'before_retry':
      return 'waiting';
    case 'succeeded':
      return 'complete';
    case 'canceled':
      return 'cancel';
    case 'failed':
      return 'fail';
    default:
      return 'processing';
  }
}

/** `YYYY-MM-DD HH:mm:ss` in the server's time zone, as efile shows times. */
export function efileTime(ms: number | null): string | null {
  if (ms === null) return null;
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A virtual path as the viewer sees it (below their base path). */
function shown(principal: Principal, path: unknown): string | null {
  if (typeof path !== 'string') return null;
  return isWithin(path, principal.basePath) ? relativeTo(path, principal.basePath) : path;
}

/** One task in the shape of efile's `task/list` (every field of the seed's table). */
export function efileTask(task: Task, viewer: Principal) {
  const p = task.payload;
  const duplicate = p.overwrite === true ? 'cover' : p.keepBoth === true ? 'both' : null;
  const failed = task.state === 'failed' || task.state === 'canceled';
  return {
    taskId: task.id,
    userId: String(task.creatorId),
    userName: task.creator,
    clusterUserName: task.creator,
    // A job's run names its folders srcDir/dstDir.
    sourcePath: shown(viewer, p.src ?? p.srcDir ?? p.path ?? p.dst),
    targetPath: task.kind === 'delete' ? null : shown(viewer, p.dstDir ?? p.dst),
    duplicateHandleType: duplicate,
    clusterId: null,
    clusterName: null,
    operationType: task.kind,
    synchronousExecution: false,
    status: efileStatus(task.state),
    errorCode: failed && task.errorCode ? efileCode(task.errorCode) : null,
    errorMsg: failed && task.error ? task.error : null,
    totalSize: task.totalBytes,
    totalNum: task.totalFiles,
    processedSize: task.doneBytes,
    processedNum: task.doneFiles,
    progress: `${Math.floor(progressOf(task))}%`,
    submitTime: efileTime(task.createdAt),
    startTime: efileTime(task.startTime),
    updateTime: efileTime(task.updatedAt),
  };
}

const nullableString = { type: ['string', 'null'] } as const;

/** JSON schema of `efileTask`, for replies and the OpenAPI document. */
export const efileTaskSchema = {
  type: 'object',
  properties: {
    taskId: { type: 'string' },
    userId: { type: 'string' },
    userName: { type: 'string' },
    clusterUserName: { type: 'string' },
    sourcePath: nullableString,
    targetPath: nullableString,
    duplicateHandleType: { type: ['string', 'null'], enum: ['cover', 'both', null] },
    clusterId: nullableString,
    clusterName: nullableString,
    operationType: { type: 'string', description: 'copy, move or delete (other kinds show their own name)' },
    synchronousExecution: { type: 'boolean' },
    status: { type: 'string', enum: ['waiting', 'processing', 'cancel', 'complete', 'fail'] },
    errorCode: nullableString,
    errorMsg: nullableString,
    totalSize: { type: 'integer' },
    totalNum: { type: 'integer' },
    processedSize: { type: 'integer' },
    processedNum: { type: 'integer' },
    progress: { type: 'string', description: 'e.g. "42%"' },
    submitTime: nullableString,
    startTime: nullableString,
    updateTime: nullableString,
  },
} as const;
