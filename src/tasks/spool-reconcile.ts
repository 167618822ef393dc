import type { Logger } from 'pino';
import { DataArea } from '../storage/data-area.ts';
import type { TaskStore } from '../store/task-store.ts';

/**
 * Remove upload bodies left in the spool by tasks that no longer need them: the spool goes after
 * an upload's success is recorded, so a process killed in between leaves it behind. Spools of
 * succeeded tasks always go; with `orphans` (this process alone uses the staging directory, so
 * no upload is being received), also those whose task is not in the store at all (deleted).
 * Failed and canceled uploads keep theirs: a retry reads it.
 */
export async function removeFinishedSpools(
  /** The staging directory (`Config.stagingDir`). */
  stagingDir: string,
  store: Pick<TaskStore, 'getMany'>,
  options: { orphans: boolean; log: Logger },
): Promise<number> {
  const data = await DataArea.open(stagingDir);
  const ids = await data.spooled();
  if (ids.length === 0) return 0;
  const tasks = new Map((await store.getMany(ids)).map((t) => [t.id, t]));
  let removed = 0;
  for (const id of ids) {
    const task = tasks.get(id);
    if (task ? task.state !== 'succeeded' : !options.orphans) continue;
    const spool = data.spool(id);
    await spool.driver
      .remove(spool.path, { file: true })
      .then(() => removed++)
      .catch((err) => options.log.warn({ err, task: id }, 'could not remove a spooled upload'));
  }
  if (removed > 0) options.log.info({ removed }, 'removed upload spools of finished tasks');
  return removed;
}
