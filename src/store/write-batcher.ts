import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';

/**
 * Group commits for the engine's hot writes (state changes and progress). Writes asked for in
 * the same turn of the event loop run in one transaction: one commit (one fsync with
 * `synchronous=FULL`) for many tasks instead of one each. Each caller's promise settles only
 * after the commit, with its own statement's result or error.
 */
export class WriteBatcher {
  private queue: {
    run: (db: Kysely<Database>) => Promise<unknown>;
    resolve: (v: unknown) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private scheduled = false;

  constructor(private readonly db: Kysely<Database>) {}

  write<T>(run: (db: Kysely<Database>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    const first = batch[0];
    if (batch.length === 1 && first) {
      first.run(this.db).then(first.resolve, first.reject);
      return;
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      await this.db.transaction().execute(async (trx) => {
        for (const item of batch) {
          try {
            outcomes.push({ ok: true, value: await item.run(trx) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) item.resolve(outcome.value);
      else item.reject(outcome?.error);
    });
  }
}
