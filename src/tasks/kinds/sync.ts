import { FerryError } from '../../errors.ts';
import type { Driver } from '../../storage/driver.ts';
import { joinPath, parentPath } from '../../storage/paths.ts';
import { isTreeRun, syncDefinition, type TreeRunPayload } from '../definitions/sync.ts';
import type { Task } from '../model.ts';
import { CopyCheckpoints } from './copy-checkpoints.ts';
import type { TaskContext, TaskKindHandler } from './kind.ts';
import { deletedFiles, type PlannedCopy, planTree, type TreeMode, type TreeSpec } from './sync-plan.ts';
import { type Endpoint, forEachLimit, ItemFailures, items, transferFile } from './transfer.ts';

// The kinds that run a job's copy or move read this too.
export { isTreeRun };

/** Files copied at once by one run: small files are latency-bound. */
const FILE_CONCURRENCY = 8;
/** Deletes between two checks of the lease (one store query each). */
const FENCE_EVERY = 100;

/** What a run did, saved in its task's payload as `result` (the job's `runs` show it). */
export interface TreeRunResult {
  copied: number;
  deleted: number;
  skipped: number;
  failed: number;
  bytes: number;
}

/** Turn a run's payload into the two ends and rules `planTree` compares (shared with `plan`). */
export function treeSpecOf(payload: TreeRunPayload, resolve: (path: string) => Endpoint): TreeSpec {
  return {
    mode: payload.mode,
    src: resolve(payload.srcDir),
    dst: resolve(payload.dstDir),
    include: payload.include,
    exclude: payload.exclude,
    compare: payload.compare,
    conflict: payload.conflict,
    maxDelete: payload.maxDelete,
  };
}

/**
 * Run a job's transfer: plan (refusing the data-loss traps before anything changes), create the
 * missing folders, copy new and changed files several at a time, and — for a sync, and only
 * when every copy went well, as rclone does — delete what the source no longer has. A move
 * deletes each source file once its copy is in place. Each file's failure is recorded and the
 * rest go on; the run's counts are saved with the task, and it fails when any file did.
 */
export async function runTree(task: Task, ctx: TaskContext): Promise<void> {
  const payload = syncDefinition.read(task.payload);
  const spec = treeSpecOf(payload, (path) => ctx.mounts.resolve(path));
  const { src, dst } = spec;
  const { signal, progress } = ctx;
  progress.setStatus('comparing');
  const plan = await planTree(spec, signal);
  progress.setStatus(`copying ${plan.copies.length} files`);
  const copyBytes = plan.copies.reduce((sum, c) => sum + c.size, 0);
  progress.setTotals({ bytes: copyBytes, files: plan.copies.length + deletedFiles(plan) });
  const result: TreeRunResult = { copied: 0, deleted: 0, skipped: plan.skipped, failed: 0, bytes: 0 };
  // A large file a run was in the middle of when its node died continues on the node that takes
  // the run over (the payload's checkpoints; dropped again with the result at the end).
  const checkpoints = new CopyCheckpoints(task.payload, ctx);
  const failures = new ItemFailures(progress, signal);
  const failed = (rel: string, err: unknown) => {
    result.failed++;
    failures.add(rel, err);
  };
  for (const b of plan.blocked) failed(b.rel, new FerryError(b.retry ? 'E_BACKEND' : 'E_FORBIDDEN', b.error));

  try {
    await dst.driver.mkdir(dst.path);
    for (const folder of plan.folders) {
      const path = joinPath(dst.path, folder.rel);
      try {
        if (folder.fileInWay) {
          await ctx.fence();
          await dst.driver.remove(path, { signal, file: true });
          result.deleted++;
          progress.fileDone();
        }
        await dst.driver.mkdir(path);
      } catch (err) {
        failed(folder.rel, err);
      }
    }
    await forEachLimit(plan.copies, FILE_CONCURRENCY, signal, async (copy) => {
      try {
        await copyOne(spec.mode, copy, { src, dst, payload, ctx, checkpoints });
        result.deleted += copy.clears.length;
        for (const _ of copy.clears) progress.fileDone();
        result.copied++;
        result.bytes += copy.size;
        progress.fileDone();
      } catch (err) {
        failed(copy.rel, err);
      }
    });
    if (spec.mode === 'sync' && result.failed === 0) {
      progress.setStatus(`deleting ${deletedFiles(plan)} files`);
      // Files before the folders they emptied: the plan lists them in that order. A delete is not
      // undone: the lease is checked before the first and every FENCE_EVERY after, so a node that
      // stalled past its lease stops within that many.
      for (const [i, d] of plan.deletes.entries()) {
        signal.throwIfAborted();
        if (i % FENCE_EVERY === 0) await ctx.fence();
        try {
          await dst.driver.remove(joinPath(dst.path, d.rel), { signal, file: !d.isDir });
          if (!d.isDir) {
            result.deleted++;
            progress.fileDone();
          }
        } catch (err) {
          failed(d.rel, err);
        }
      }
    }
  } finally {
    await ctx.savePayload({ ...task.payload, result });
  }
  const notDeleted = spec.mode === 'sync' && result.failed > 0 && plan.deletes.length > 0;
  failures.throwIfAny(
    (count) => `${items(count)} failed${notDeleted ? '; nothing was deleted at the destination' : ''}`,
  );
}

async function copyOne(
  mode: TreeMode,
  copy: PlannedCopy,
  run: {
    src: Endpoint;
    dst: Endpoint;
    payload: TreeRunPayload;
    ctx: TaskContext;
    checkpoints: CopyCheckpoints;
  },
): Promise<void> {
  const { ctx } = run;
  const from: Endpoint = { driver: run.src.driver, path: joinPath(run.src.path, copy.rel) };
  let to: Endpoint = { driver: run.dst.driver, path: joinPath(run.dst.path, copy.rel) };
  if (copy.folderInWay) {
    await ctx.fence();
    await to.driver.remove(to.path, { signal: ctx.signal });
  }
  const keepBoth = copy.replace && run.payload.conflict === 'keep_both';
  if (keepBoth) to = { ...to, path: await freeName(to.driver, to.path) };
  await transferFile(from, to, copy.size, {
    signal: ctx.signal,
    progress: ctx.progress,
    overwrite: copy.replace && !keepBoth,
    tempKey: ctx.taskId,
    // A move deletes the only other copy next: its copy must be on disk first.
    sync: ctx.syncFiles || mode === 'move',
    beforePlace: () => ctx.fence(),
    ownsTemp: () => ctx.holds(),
    resume: run.checkpoints.for(to.path),
  });
  run.checkpoints.placed(to.path);
  if (mode === 'move' && !copy.viaLink) {
    // Deleting a source is not undone: only the lease holder does it, once the copy is checked.
    const written = await to.driver.stat(to.path);
    if (!written || written.isDir || written.size !== copy.size)
      throw new FerryError('E_VERIFY_FAILED', `destination check failed for ${to.path}; source kept`);
    await ctx.fence();
    await from.driver.remove(from.path, { signal: ctx.signal, file: true });
  }
}

/** `name (1).ext`, `name (2).ext`, … beside `path`: the first one not taken. */
async function freeName(driver: Driver, path: string): Promise<string> {
  const dir = parentPath(path);
  const name = path.slice(dir === '/' ? 1 : dir.length + 1);
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let i = 1; i < 10_000; i++) {
    const candidate = joinPath(dir, `${stem} (${i})${ext}`);
    if (!(await driver.stat(candidate))) return candidate;
  }
  throw new FerryError('E_EXISTS', `no free name for ${path}`);
}

/** The `sync` task kind: one run of a sync job. Copy and move jobs run under their own kinds. */
export const syncKind: TaskKindHandler = {
  kind: 'sync',
  run: runTree,
};
