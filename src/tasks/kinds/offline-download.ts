import type { OfflineTools } from '../../download/offline-tools.ts';
import { parseDownloadUrl } from '../../download/url-policy.ts';
import { FerryError } from '../../errors.ts';
import { DataArea } from '../../storage/data-area.ts';
import type { Endpoint } from '../../storage/driver.ts';
import { joinPath } from '../../storage/paths.ts';
import { taskSpec } from '../definitions/index.ts';
import { type OfflineDownloadPayload, offlineDownloadDefinition } from '../definitions/offline-download.ts';
import type { Task } from '../model.ts';
import { canceledByUser, type TaskContext, type TaskKindHandler } from './kind.ts';

/**
 * Download one URL into `<dataDir>/offline/<taskId>/` with the task's tool, then queue one
 * `offline_download_transfer` task per downloaded item (one file; a torrent may give several)
 * that moves it into the destination folder.
 *
 * Resume and cancel: a retry (after a failed attempt) or a restart continues the partial file —
 * SimpleHttp with `Range`/`If-Range`, aria2 by its gid or `--continue`. A user's cancel stops the
 * bytes at once and removes the partial download, so a canceled task holds no disk space; a
 * retry after a cancel starts over.
 *
 * `upload_download_stream` (SimpleHttp only): the body goes straight into the destination
 * through its driver's `write` (temporary name, placed when whole), with nothing in the data dir
 * and no transfer task. Nothing partial is kept, so every attempt — a retry, a restart — fetches
 * the file again from its first byte; a cancel leaves nothing under the final name.
 */
export function offlineDownloadKind(tools: OfflineTools): TaskKindHandler {
  return {
    kind: 'offline_download',
    async run(task, ctx) {
      const payload = offlineDownloadDefinition.read(task.payload);
      if (payload.deletePolicy === 'upload_download_stream') {
        await streamHttp(tools, payload, ctx);
        return;
      }
      const data = await DataArea.open(ctx.dataDir);
      const area = data.offline(task.id);
      const done = { driver: area.driver, path: joinPath(area.path, 'done') };
      let saved: Record<string, unknown> = { ...task.payload };
      const save = async (patch: Record<string, unknown>) => {
        saved = { ...saved, ...patch };
        await ctx.savePayload(saved);
      };
      try {
        // A finished download whose hand-off was interrupted goes straight to the hand-off.
        if (!(await hasEntries(done))) {
          if (payload.tool === 'SimpleHttp') await downloadHttp(tools, payload, ctx, save);
          else await downloadAria2(tools, payload, ctx, save);
        }
        // A node that stalled past its lease queues nothing: the node holding the task does.
        await ctx.fence();
        await handOff(task, payload, data, done, ctx);
        await save({ handedOff: true });
      } catch (err) {
        if (canceledByUser(ctx.signal)) await area.driver.remove(area.path);
        throw err;
      }
    },
    async discard(task, deps) {
      const area = (await DataArea.open(deps.dataDir)).offline(task.id);
      const { driver } = area;
      if (task.payload.handedOff !== true) {
        await driver.remove(area.path);
        return;
      }
      // The transfer tasks own done/ and remove it under their delete policy.
      await driver.remove(joinPath(area.path, 'partial'), { file: true });
      await driver.remove(joinPath(area.path, 'aria2'));
      if ((await driver.list(area.path).catch(() => null))?.length === 0) await driver.remove(area.path);
    },
  };
}

type Save = (patch: Record<string, unknown>) => Promise<void>;

async function downloadHttp(
  tools: OfflineTools,
  payload: OfflineDownloadPayload,
  ctx: TaskContext,
  save: Save,
): Promise<void> {
  const url = parseDownloadUrl(payload.url, 'SimpleHttp');
  ctx.progress.setStatus('connecting');
  await tools.httpInto(ctx.taskId, {
    url,
    signal: ctx.signal,
    state: payload.http ?? {},
    saveState: (http) => save({ http }),
    onStart: ({ offset, total, fileName }) => {
      ctx.progress.setTotals({ bytes: total, files: 1 });
      if (offset > 0) ctx.progress.addBytes(offset);
      ctx.progress.setStatus(offset > 0 ? `${fileName} (resumed at byte ${offset})` : fileName);
      if (offset > 0) ctx.log.info({ offset }, 'resuming download');
    },
    onBytes: (n) => ctx.progress.addBytes(n),
    sync: ctx.syncFiles,
    resumed: ctx.resumed,
    // The partial file may be another node's now (a takeover): only the holder finishes it.
    beforePlacing: () => ctx.fence(),
  });
}

/** SimpleHttp's body straight into the destination driver (upload_download_stream). */
async function streamHttp(tools: OfflineTools, payload: OfflineDownloadPayload, ctx: TaskContext) {
  if (payload.tool !== 'SimpleHttp')
    throw new FerryError(
      'E_BAD_REQUEST',
      `delete_policy upload_download_stream needs SimpleHttp, not ${payload.tool}`,
    );
  const url = parseDownloadUrl(payload.url, 'SimpleHttp');
  const dst = ctx.mounts.resolve(payload.dstDir);
  ctx.progress.setStatus('connecting');
  if (ctx.resumed) ctx.log.info('streaming again from the first byte: a stream keeps nothing to resume');
  const http = await tools.http();
  await http.stream({
    url,
    signal: ctx.signal,
    consume: async (body, { fileName, total }) => {
      ctx.progress.setTotals({ bytes: total, files: 1 });
      ctx.progress.setStatus(fileName);
      await dst.driver.mkdir(dst.path);
      // Replaces a file of the same name, as the transfer of a downloaded file does.
      await dst.driver.write(joinPath(dst.path, fileName), body, {
        signal: ctx.signal,
        overwrite: true,
        tempKey: ctx.taskId,
        sync: ctx.syncFiles,
        beforePlace: () => ctx.fence(),
        onProgress: (n) => ctx.progress.addBytes(n),
        ...(total > 0 && { size: total }),
      });
    },
  });
  ctx.progress.fileDone();
}

async function downloadAria2(
  tools: OfflineTools,
  payload: OfflineDownloadPayload,
  ctx: TaskContext,
  save: Save,
): Promise<void> {
  const url = parseDownloadUrl(payload.url, 'aria2');
  // aria2 connects by itself: the policy can only check where the name points now.
  if (url.protocol !== 'magnet:') await tools.policy.checkResolved(url.hostname);
  ctx.progress.setStatus('downloading with aria2');
  let reported = 0;
  // aria2 does not fsync: the download is durable before the task may succeed (unless left to
  // the OS, `syncFiles`).
  await tools.aria2Into(ctx.taskId, {
    url: payload.url,
    signal: ctx.signal,
    ...(payload.gid !== undefined && { gid: payload.gid }),
    saveGid: (gid) => save({ gid }),
    onProgress: (completed, total) => {
      if (total > 0) ctx.progress.setTotals({ bytes: total, files: 1 });
      if (completed > reported) ctx.progress.addBytes(completed - reported);
      reported = Math.max(reported, completed);
    },
    sync: ctx.syncFiles,
    beforePlacing: () => ctx.fence(),
  });
}

/** Queue one transfer per downloaded item. Ids derive from this task's, so a repeat queues nothing new. */
async function handOff(
  task: Task,
  payload: OfflineDownloadPayload,
  data: DataArea,
  done: Endpoint,
  ctx: TaskContext,
) {
  const dst = ctx.mounts.resolve(payload.dstDir);
  const names = (await done.driver.list(done.path)).map((e) => e.name).sort();
  if (names.length === 0) throw new FerryError('E_BACKEND', 'the download produced no file');
  for (const [i, name] of names.entries()) {
    const src = data.shown(joinPath(done.path, name));
    await ctx.enqueue({
      id: `${task.id}-t${i}`,
      ...taskSpec(
        'offline_download_transfer',
        { src, dstDir: payload.dstDir, deletePolicy: payload.deletePolicy },
        () => dst,
      ),
    });
  }
  ctx.progress.fileDone();
}

async function hasEntries(dir: Endpoint): Promise<boolean> {
  return dir.driver.list(dir.path).then(
    (entries) => entries.length > 0,
    () => false,
  );
}
