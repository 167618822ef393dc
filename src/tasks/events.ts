import { EventEmitter } from 'node:events';
import type { Task } from './model.ts';

/** What listeners learn of a removed task: enough to tell whose it was. */
export type RemovedTask = Pick<Task, 'id' | 'kind' | 'creatorId'>;

/** Where a change was made: in this process, or in another node (relayed through the store). */
export interface EventOrigin {
  remote?: boolean;
}

/**
 * Notifications of task changes (state changes and progress flushes). The SSE endpoint and
 * waiting requests listen here; the store stays the truth. Changes made by this process reach
 * `on`/`onRemoved` and also `onLocal`/`onLocalRemoved` (what the relay to other nodes sends on);
 * changes relayed from other nodes reach `on`/`onRemoved` only. A listener that throws never
 * reaches the worker that emitted.
 */
export class TaskEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // One listener per open SSE stream or waiting request: no fixed cap.
    this.emitter.setMaxListeners(0);
  }

  emit(task: Task, origin: EventOrigin = {}): void {
    this.call('change', task);
    if (!origin.remote) this.call('local-change', task);
  }

  /** Subscribe to every change; returns the function that unsubscribes. */
  on(listener: (task: Task) => void): () => void {
    return this.subscribe('change', listener);
  }

  /** Subscribe to the changes made by this process. */
  onLocal(listener: (task: Task) => void): () => void {
    return this.subscribe('local-change', listener);
  }

  /** Tasks removed from the store (deleted, cleared, swept). */
  emitRemoved(tasks: readonly RemovedTask[], origin: EventOrigin = {}): void {
    if (tasks.length === 0) return;
    this.call('removed', tasks);
    if (!origin.remote) this.call('local-removed', tasks);
  }

  onRemoved(listener: (tasks: readonly RemovedTask[]) => void): () => void {
    return this.subscribe('removed', listener);
  }

  onLocalRemoved(listener: (tasks: readonly RemovedTask[]) => void): () => void {
    return this.subscribe('local-removed', listener);
  }

  /** True when anything listens to every change (an SSE stream, a waiting request). */
  watched(): boolean {
    return this.emitter.listenerCount('change') + this.emitter.listenerCount('removed') > 0;
  }

  private subscribe<T>(event: string, listener: (value: T) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  private call(event: string, value: unknown): void {
    for (const listener of this.emitter.listeners(event) as ((value: unknown) => void)[]) {
      try {
        listener(value);
      } catch {
        // a broken listener must not break the engine
      }
    }
  }
}
