import type { CopyCheckpoint, CopyResume } from '../../storage/transfer.ts';
import type { TaskContext } from './kind.ts';

/** The payload field that holds a copy's checkpoints, by destination path (driver-relative). */
const FIELD = 'partials';

/**
 * The checkpoints of a copy task's large files (see `CopyResume`), kept in the task's payload so
 * that the attempt after this one, on another node after a takeover, continues each file where
 * it stood instead of from its first byte. Saves go one at a time, each with every file's latest
 * checkpoint; a file that is in place drops out of the next save.
 */
export class CopyCheckpoints {
  private readonly earlier: Map<string, CopyCheckpoint>;
  private readonly current = new Map<string, CopyCheckpoint>();
  private saving: Promise<void> = Promise.resolve();

  /** `payload`: the task's payload as it is stored now (what a save keeps beside the checkpoints). */
  constructor(
    private readonly payload: Readonly<Record<string, unknown>>,
    private readonly ctx: Pick<TaskContext, 'savePayload'>,
  ) {
    this.earlier = readCheckpoints(payload[FIELD]);
  }

  /** How the copy to `path` resumes what an earlier attempt did and records its own progress. */
  for(path: string): CopyResume {
    const earlier = this.earlier.get(path);
    return {
      ...(earlier && { earlier }),
      save: (checkpoint) => {
        this.current.set(path, checkpoint);
        const saved = this.saving.then(() =>
          this.ctx.savePayload({ ...this.payload, [FIELD]: Object.fromEntries(this.current) }),
        );
        this.saving = saved.catch(() => undefined);
        return saved;
      },
    };
  }

  /** The file at `path` is in place: nothing of it to resume. */
  placed(path: string): void {
    this.current.delete(path);
  }
}

/** The checkpoints found in a payload; anything malformed is ignored (that file starts over). */
function readCheckpoints(value: unknown): Map<string, CopyCheckpoint> {
  const out = new Map<string, CopyCheckpoint>();
  if (typeof value !== 'object' || value === null) return out;
  for (const [path, c] of Object.entries(value)) {
    if (typeof c !== 'object' || c === null) continue;
    const { size, modified, done } = c as Record<string, unknown>;
    if ([size, modified, done].every((n) => typeof n === 'number' && Number.isFinite(n) && n >= 0))
      out.set(path, { size, modified, done } as CopyCheckpoint);
  }
  return out;
}
