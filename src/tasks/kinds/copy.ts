import { FerryError } from '../../errors.ts';
import type { Driver } from '../../storage/driver.ts';
import type { Resolved } from '../../storage/mounts.ts';
import { baseName, isWithin, joinPath } from '../../storage/paths.ts';
import { StagedTree } from '../../storage/staged-tree.ts';
import { removeTemp } from '../../storage/transfer.ts';
import { type CopyPayload, copyDefinition } from '../definitions/copy.ts';
import type { Task } from '../model.ts';
import { CopyCheckpoints } from './copy-checkpoints.ts';
import type { TaskContext, TaskKindHandler } from './kind.ts';
import { isTreeRun, runTree } from './sync.ts';
import {
  copySmallLocal,
  type Endpoint,
  forEachLimit,
  ItemFailures,
  items,
  measureTree,
  sameContent,
  transferFile,
  walkTree,
} from './transfer.ts';

/** Files copied at once inside one directory task: small files are latency-bound. */
const FILE_CONCURRENCY = 8;

/** `name (1).ext`, `name (2).ext`, … : the first name not taken in `dir`. */
async function freeName(driver: Driver, dir: string, name: string): Promise<string> {
  if (!(await driver.stat(joinPath(dir, name)))) return name;
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let i = 1; i < 10_000; i++) {
    const candidate = `${stem} (${i})${ext}`;
    if (!(await driver.stat(joinPath(dir, candidate)))) return candidate;
  }
  throw new FerryError('E_EXISTS', `no free name for ${name} in ${dir}`);
}

/** What happens to a file once its copy is in place (move deletes the source). */
type AfterFile = (src: Endpoint, dst: Endpoint, size: number) => Promise<void>;

export interface CopyPlan {
  src: Resolved;
  dst: Resolved;
  /** Destination path of the item inside the destination driver. */
  dstPath: string;
  isDir: boolean;
  size: number;
  /** The source is a followed link (`Entry.link`): a move may delete nothing through it. */
  link: boolean;
  /** Where the task's large files record how far they got, so a takeover resumes them. */
  checkpoints?: CopyCheckpoints;
}

/**
 * Resolve and check a copy/move: source exists, destination is not the source or inside it.
 * With `keepBoth`, the free destination name is chosen once and saved in the task.
 */
export async function planCopy(task: Task, payload: CopyPayload, ctx: TaskContext): Promise<CopyPlan | null> {
  const src = ctx.mounts.resolve(payload.src);
  const dst = ctx.mounts.resolve(payload.dstDir);
  const entry = await src.driver.stat(src.path);
  if (!entry) return null;
  let name = payload.dstName ?? baseName(payload.src);
  let stored = task.payload;
  if (payload.keepBoth && payload.dstName === undefined) {
    name = await freeName(dst.driver, dst.path, name);
    stored = { ...task.payload, dstName: name };
    await ctx.savePayload(stored);
  }
  const dstPath = joinPath(dst.path, name);
  if (src.mount === dst.mount && isWithin(dstPath, src.path)) {
    throw new FerryError(
      dstPath === src.path ? 'E_SAME_PATH' : 'E_BAD_REQUEST',
      dstPath === src.path ? 'source and destination are the same' : 'cannot copy a folder into itself',
    );
  }
  return {
    src,
    dst,
    dstPath,
    isDir: entry.isDir,
    size: entry.size,
    link: entry.link === true,
    checkpoints: new CopyCheckpoints(stored, ctx),
  };
}

/**
 * Copy the planned item. A folder is one task for the whole tree: totals first, then files
 * (several at once), with each file's failure recorded and the rest going on. On a resumed task,
 * files already identical at the destination are skipped. Throws at the end when items failed.
 */
export async function copyPlanned(
  // Only drivers and paths are used, so a tree outside any mount (decompress_upload's) fits too.
  plan: Omit<CopyPlan, 'src' | 'dst'> & { src: Endpoint; dst: Endpoint },
  payload: CopyPayload,
  ctx: TaskContext,
  afterFile?: AfterFile,
): Promise<void> {
  const { signal, progress } = ctx;
  const one = (rel: string, size: number, after: AfterFile | undefined, staging?: Staging) =>
    copyOneFile(
      { driver: plan.src.driver, path: rel === '/' ? plan.src.path : joinPath(plan.src.path, rel) },
      { driver: plan.dst.driver, path: rel === '/' ? plan.dstPath : joinPath(plan.dstPath, rel) },
      size,
      payload,
      ctx,
      after,
      staging,
      plan.checkpoints,
    );
  if (!plan.isDir) {
    progress.setTotals({ bytes: plan.size, files: 1 });
    progress.setStatus(baseName(plan.src.path));
    await plan.dst.driver.mkdir(plan.dst.path);
    await one('/', plan.size, afterFile);
    return;
  }
  // The tree is counted beside the copy, not before it: the totals appear once known (until then
  // the progress is 0), and the copy does not wait for a second walk of the whole tree. The
  // counting stops when the copy does.
  const counting = new AbortController();
  const counted = measureTree(plan.src.driver, plan.src.path, AbortSignal.any([signal, counting.signal]));
  counted.then((totals) => progress.setTotals(totals)).catch(() => undefined);
  try {
    await plan.dst.driver.mkdir(plan.dstPath);
    const failures = new ItemFailures(progress, signal);
    const failed = failures.add;
    // Folders are created in walk order, before any file inside them starts copying; files then
    // copy several at a time.
    async function* filesWithFoldersMade() {
      for await (const item of walkTree(plan.src.driver, plan.src.path, signal, failed)) {
        if (!item.entry.isDir) yield item;
        else
          await plan.dst.driver.mkdir(joinPath(plan.dstPath, item.rel)).catch((err) => failed(item.rel, err));
      }
    }
    // Small files between two local mounts are made durable in batches, not one by one.
    const staged = StagedTree.open(
      plan.src,
      { driver: plan.dst.driver, path: plan.dstPath },
      { signal, sync: mustSync(ctx, afterFile), tempKey: ctx.taskId, beforePlace: () => ctx.fence() },
    );
    const tree: TreeStaging | undefined = staged
      ? {
          copies: staged,
          // Links are not staged: each is copied the general way, one after another, as found.
          links: Promise.resolve(),
          linked(rel, size, after) {
            this.links = this.links.then(() => one(rel, size, after).catch((err) => failed(rel, err)));
            // Awaited once the walk ends; a cancel's rejection before then is not unhandled.
            this.links.catch(() => undefined);
          },
        }
      : undefined;
    try {
      await forEachLimit(
        filesWithFoldersMade(),
        FILE_CONCURRENCY,
        signal,
        async ({ entry, rel, viaLink }) => {
          // A file reached through a link to a folder is copied, but what happens after (a move's
          // delete) would happen in the folder the link leads to, outside the tree: it is skipped.
          const after = viaLink || plan.link ? undefined : afterFile;
          try {
            await one(rel, entry.size, after, tree && { tree, rel, failed: (err) => failed(rel, err) });
          } catch (err) {
            failed(rel, err);
          }
        },
      );
      await tree?.copies.finish();
      await tree?.links;
    } catch (err) {
      await tree?.links.catch(() => undefined);
      await tree?.copies.abandon();
      throw err;
    }
    // The count only feeds the progress: a count that failed (a listing of it did) fails no copy.
    const totals = await counted.catch(() => null);
    failures.throwIfAny((count) => `${items(count)} failed${totals ? ` (of ${totals.files} files)` : ''}`);
  } finally {
    counting.abort();
  }
}

/**
 * Whether copies reach the disk before they count as done: always when something runs after each
 * file (a move deletes its source then), else as the server's `syncFiles` says.
 */
function mustSync(ctx: TaskContext, afterFile: AfterFile | undefined): boolean {
  return ctx.syncFiles || afterFile !== undefined;
}

/** A tree's batched small local copies (between two local mounts). */
interface TreeStaging {
  copies: StagedTree;
  /** The copies of links met so far, made the general way. */
  links: Promise<void>;
  /** A file at `rel` proved to be a link: copy it the general way, then run `after`. */
  linked(rel: string, size: number, after: AfterFile | undefined): void;
}

/** One file's part in its tree's staging, and how to record its failure found later. */
interface Staging {
  tree: TreeStaging;
  /** The file's path relative to the tree. */
  rel: string;
  failed(err: unknown): void;
}

async function copyOneFile(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  payload: CopyPayload,
  ctx: TaskContext,
  afterFile?: AfterFile,
  staging?: Staging,
  checkpoints?: CopyCheckpoints,
): Promise<void> {
  const { signal, progress } = ctx;
  const options = {
    signal,
    progress,
    overwrite: payload.overwrite,
    tempKey: ctx.taskId,
    sync: mustSync(ctx, afterFile),
    // A node that stalled past its lease places nothing once another holds the task.
    beforePlace: () => ctx.fence(),
    ownsTemp: () => ctx.holds(),
    ...(checkpoints && { resume: checkpoints.for(dst.path) }),
  };
  // Nothing to skip: no lookup of the destination first. Every transfer that may not replace a
  // file refuses a taken name itself (that saves two requests per file on S3); transferFile tries
  // the small local copy first. With overwrite, only that copy goes on without the lookup: its
  // thread refuses a folder in the way.
  if (!payload.skipExisting && !ctx.resumed) {
    if (staging && (await stageSmallCopy(src, dst, size, staging, payload, ctx, afterFile))) return;
    let copied = true;
    if (!payload.overwrite) await transferFile(src, dst, size, options);
    else copied = await copySmallLocal(src, dst, size, options);
    if (copied) {
      checkpoints?.placed(dst.path);
      await afterFile?.(src, dst, size);
      progress.fileDone();
      return;
    }
  }
  const existing = await dst.driver.stat(dst.path);
  if (existing) {
    if (existing.isDir) throw new FerryError('E_EXISTS', `a folder is in the way: ${dst.path}`);
    const skip =
      (payload.skipExisting && existing.size === size) ||
      (ctx.resumed && existing.size === size && (await sameContent(src, dst, signal)));
    if (skip) {
      // A crash between placing the file and removing its temp link leaves that temp behind.
      if (ctx.resumed) await removeTemp(dst, ctx.taskId);
      progress.addBytes(size);
      await afterFile?.(src, dst, size);
      progress.fileDone();
      return;
    }
    if (!payload.overwrite) throw new FerryError('E_EXISTS', `already exists: ${dst.path}`);
  }
  await transferFile(src, dst, size, options);
  checkpoints?.placed(dst.path);
  await afterFile?.(src, dst, size);
  progress.fileDone();
}

/**
 * Hand a small file between two local mounts to the tree's staging; false, having done nothing,
 * for a larger file. Its bytes count once it is in place, and it is done (a move deletes the
 * source) once its name is durable; a failure to place it is recorded then. A link found at the
 * source is handed back to be copied the general way.
 */
function stageSmallCopy(
  src: Endpoint,
  dst: Endpoint,
  size: number,
  staging: Staging,
  payload: CopyPayload,
  ctx: TaskContext,
  afterFile?: AfterFile,
): Promise<boolean> {
  // A file that fails to copy is reported through `failed`; add throws only what fails the tree.
  return staging.tree.copies.add({
    rel: staging.rel,
    size,
    overwrite: payload.overwrite,
    placed: () => ctx.progress.addBytes(size),
    failed: (err) => {
      if (err === 'link') staging.tree.linked(staging.rel, size, afterFile);
      else staging.failed(err);
    },
    done: async () => {
      try {
        await afterFile?.(src, dst, size);
        ctx.progress.fileDone();
      } catch (err) {
        staging.failed(err);
      }
    },
  });
}

export const copyKind: TaskKindHandler = {
  kind: 'copy',
  async run(task, ctx) {
    // A copy job's run: a folder's tree into another, with the job's filters and conflict rule.
    if (isTreeRun(task.payload)) return runTree(task, ctx);
    const payload = copyDefinition.read(task.payload);
    const plan = await planCopy(task, payload, ctx);
    if (!plan) throw new FerryError('E_NOT_FOUND', `not found: ${payload.src}`);
    await copyPlanned(plan, payload, ctx);
  },
};
