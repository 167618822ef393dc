import { EventEmitter } from 'node:events';
import type { Task } from './model.ts';

/** What listeners learn of a removed task: enough to tell whose it was. */
export type RemovedTask = Pick<Task, 'id' | 'kind' | 'creatorId'>;

/**
 * In-process notifications of task changes (state changes and progress flushes). The SSE
 * endpoint and waiting uploads listen here; the store stays the truth. A listener that throws
 * is logged by the emitter's owner and never reaches the worker that emitted.
 */
export class TaskEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // One listener per open SSE stream or waiting request: no fixed cap.
    this.emitter.setMaxListeners(0);
  }

  emit(task: Task): void {
    for (const listener of this.emitter.listeners('change') as ((t: Task) => void)[]) {
      try {
        listener(task);
      } catch {
        // a broken listener must not break the engine
      }
    }
  }

  /** Subscribe; returns the function that unsubscribes. */
  on(listener: (task: Task) => void): () => void {
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }

  /** Tasks removed from the store (deleted, cleared, swept). */
  emitRemoved(tasks: readonly RemovedTask[]): void {
    if (tasks.length === 0) return;
    for (const listener of this.emitter.listeners('removed') as ((tasks: readonly RemovedTask[]) => void)[]) {
      try {
        listener(tasks);
      } catch {
        // as above
      }
    }
  }

  onRemoved(listener: (tasks: readonly RemovedTask[]) => void): () => void {
    this.emitter.on('removed', listener);
    return () => this.emitter.off('removed', listener);
  }
}
