import { FerryError } from '../errors.ts';

/**
 * Why the runner stopped a running task:
 * - `canceled`: a user canceled it; it ends canceled.
 * - `deleted`: a user deleted it while it ran; it ends canceled and is removed.
 * - `lease-lost`: another worker holds it now (this one stalled past its lease); this one writes nothing.
 * - `shutdown`: the server is stopping; the task goes back to the queue and resumes at the next start.
 */
export type StopKind = 'canceled' | 'deleted' | 'lease-lost' | 'shutdown';

/**
 * The reason a task's `AbortSignal` carries. It is an `E_CANCELED` error, so code that throws
 * `signal.reason` (drivers, downloads) fails the attempt as a cancel; whoever needs to know why
 * reads `kind`, never the message.
 */
export class TaskStopped extends FerryError {
  constructor(readonly kind: StopKind) {
    super('E_CANCELED', kind === 'canceled' || kind === 'deleted' ? 'canceled' : `stopped: ${kind}`);
    this.name = 'TaskStopped';
  }
}

/** Why `signal` was aborted by the runner, or null when it was not (or by someone else). */
export function stopKindOf(signal: AbortSignal): StopKind | null {
  const reason: unknown = signal.reason;
  return signal.aborted && reason instanceof TaskStopped ? reason.kind : null;
}

/** True when a user canceled or deleted the task (its partial work may go), false for a shutdown or lost lease (it may resume). */
export function stoppedByUser(signal: AbortSignal): boolean {
  const kind = stopKindOf(signal);
  return kind === 'canceled' || kind === 'deleted';
}
