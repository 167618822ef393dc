import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.ts';

/**
 * SQLSTATEs of a transaction PostgreSQL gave up on for another one's sake (deadlock detected,
 * serialization failure): nothing of it was kept, and running it again is the documented cure.
 */
const RETRYABLE = new Set(['40P01', '40001']);
/** Runs of a batch (or a lone write) before its error is passed on. */
const TRIES = 5;

function retryable(err: unknown): boolean {
  return RETRYABLE.has((err as { code?: unknown })?.code as string);
}

/** A pause before running again, growing and spread so that two writers do not meet again. */
const backoff = (attempt: number) =>
  new Promise((r) => setTimeout(r, attempt * 10 + Math.floor(Math.random() * 10)));

/** `run`, run again after a short pause while PostgreSQL gives it up for another's sake. */
async function retrying<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!retryable(error) || attempt >= TRIES) throw error;
      await backoff(attempt);
    }
  }
}

/** How one write of a batch ended. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Settle each caller's promise with its own write's outcome, once the batch has committed. */
function settleEach(
  batch: readonly { resolve: (v: unknown) => void; reject: (e: unknown) => void }[],
  outcomes: readonly Outcome[],
): void {
  batch.forEach((item, i) => {
    const outcome = outcomes[i];
    if (outcome?.ok) item.resolve(outcome.value);
    else item.reject(outcome?.error);
  });
}

interface Queued {
  run: (db: Kysely<Database>) => Promise<unknown>;
  /** Runs several statements that must commit together or not at all. */
  atomic: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export interface WriteOptions {
  /**
   * The write runs several statements that must commit all or none (a claim: a select, then an
   * update of what it found): alone it gets a transaction of its own, in a batch a savepoint.
   */
  atomic?: boolean;
}

/**
 * The task store's one write path: group commits. Writes asked for in the same turn of the event
 * loop run in one transaction: one commit (one fsync with `synchronous=FULL`) for many tasks
 * instead of one each. Each caller's promise settles only after the commit, with its own
 * statement's result or error.
 *
 * With `savepoints` (PostgreSQL, where a failed statement aborts its whole transaction), each
 * write runs under a savepoint, so one that fails is undone alone and the others still commit;
 * without, only `atomic` writes get one.
 * A batch chosen as a deadlock's victim is run again whole (a few times): otherwise a task's
 * outcome would be lost and the task left `running` until its lease expired.
 */
export class WriteBatcher {
  private queue: Queued[] = [];
  private scheduled = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly options: { savepoints: boolean },
  ) {}

  /** Run `run` in the next group commit; settles after the commit with `run`'s result or error. */
  write<T>(run: (db: Kysely<Database>) => Promise<T>, options: WriteOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        run,
        atomic: options.atomic === true,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
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
      const alone = first.atomic
        ? () => this.db.transaction().execute((trx) => first.run(trx))
        : () => first.run(this.db);
      await retrying(alone).then(first.resolve, first.reject);
      return;
    }
    let outcomes: Outcome[];
    try {
      outcomes = await retrying(() =>
        this.db.transaction().execute(async (trx) => {
          const ran: Outcome[] = [];
          for (const item of batch) ran.push(await this.runOne(item, trx));
          return ran;
        }),
      );
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    settleEach(batch, outcomes);
  }

  /** One write of a batch; a retryable failure is thrown, to run the whole batch again. */
  private async runOne(item: Queued, trx: Kysely<Database>): Promise<Outcome> {
    if (!this.options.savepoints && !item.atomic) {
      try {
        return { ok: true, value: await item.run(trx) };
      } catch (error) {
        return { ok: false, error };
      }
    }
    await sql`SAVEPOINT batched_write`.execute(trx);
    try {
      const value = await item.run(trx);
      await sql`RELEASE SAVEPOINT batched_write`.execute(trx);
      return { ok: true, value };
    } catch (error) {
      if (retryable(error)) throw error;
      await sql`ROLLBACK TO SAVEPOINT batched_write`.execute(trx);
      return { ok: false, error };
    }
  }
}
