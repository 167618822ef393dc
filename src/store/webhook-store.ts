import type { Insertable, Kysely, Selectable } from 'kysely';
import type { Attempt, Delivery, DeliveryState, SubscribableEvent, Webhook } from '../webhooks/model.ts';
import type { Dialect } from './migrations.ts';
import type { Database, WebhookAttemptsTable, WebhookDeliveriesTable, WebhooksTable } from './schema.ts';

type Db = Kysely<Database>;

/** A webhook's fields as created or replaced. */
export type WebhookInput = Pick<Webhook, 'url' | 'secret' | 'events' | 'kinds' | 'enabled'>;

/** A delivery to write into the outbox. */
export type NewDelivery = Pick<Delivery, 'id' | 'webhookId' | 'event' | 'body'>;

/** One attempt's outcome, as the dispatcher records it. */
export interface AttemptOutcome {
  statusCode: number | null;
  error: string;
  durationMs: number;
  /** true: a 2xx answer; the delivery is done. */
  delivered: boolean;
  /** When to try again; null with `delivered: false` means give up (the delivery fails). */
  nextAttemptAt: number | null;
}

function toWebhook(row: Selectable<WebhooksTable>): Webhook {
  return {
    id: Number(row.id),
    url: row.url,
    secret: row.secret,
    events: JSON.parse(row.events) as SubscribableEvent[],
    kinds: JSON.parse(row.kinds) as string[],
    enabled: Number(row.enabled) === 1,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toDelivery(row: Selectable<WebhookDeliveriesTable>): Delivery {
  const n = (v: number | string | null) => (v === null ? null : Number(v));
  return {
    id: row.id,
    webhookId: Number(row.webhook_id),
    event: row.event,
    body: row.body,
    state: row.state as DeliveryState,
    attempts: Number(row.attempts),
    nextAttemptAt: n(row.next_attempt_at),
    giveUpAt: Number(row.give_up_at),
    deliveredAt: n(row.delivered_at),
    createdAt: Number(row.created_at),
  };
}

function toAttempt(row: Selectable<WebhookAttemptsTable>): Attempt {
  const n = (v: number | string | null) => (v === null ? null : Number(v));
  return {
    deliveryId: row.delivery_id,
    attempt: Number(row.attempt),
    statusCode: n(row.status_code),
    error: row.error,
    durationMs: Number(row.duration_ms),
    nextAttemptAt: n(row.next_attempt_at),
    deliveredAt: n(row.delivered_at),
    at: Number(row.at),
  };
}

/** The enabled webhooks, read with `db` (a transaction's handle when called from one). */
export async function enabledWebhooks(db: Db): Promise<Webhook[]> {
  return (await db.selectFrom('webhooks').selectAll().where('enabled', '=', 1).execute()).map(toWebhook);
}

/**
 * Write deliveries into the outbox with `db`: called with the transaction that records what they
 * report, so both commit or neither does. Due at once; given up after `giveUpAt`.
 */
export async function insertDeliveries(
  db: Db,
  deliveries: readonly NewDelivery[],
  now: number,
  giveUpAt: number,
): Promise<void> {
  if (deliveries.length === 0) return;
  const rows: Insertable<WebhookDeliveriesTable>[] = deliveries.map((d) => ({
    id: d.id,
    webhook_id: d.webhookId,
    event: d.event,
    body: d.body,
    state: 'pending',
    attempts: 0,
    next_attempt_at: now,
    give_up_at: giveUpAt,
    created_at: now,
  }));
  await db.insertInto('webhook_deliveries').values(rows).execute();
}

/**
 * Webhooks and their deliveries in the store. Deliveries are claimed by one dispatcher at a time
 * (a lease on the row; `SKIP LOCKED` on PostgreSQL), so two nodes never send the same attempt.
 */
export class WebhookStore {
  constructor(
    private readonly db: Db,
    private readonly dialect: Dialect,
  ) {}

  async create(input: WebhookInput, now = Date.now()): Promise<Webhook> {
    const row = await this.db
      .insertInto('webhooks')
      .values({ ...columnsOf(input), created_at: now, updated_at: now })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toWebhook(row);
  }

  async list(): Promise<Webhook[]> {
    return (await this.db.selectFrom('webhooks').selectAll().orderBy('id').execute()).map(toWebhook);
  }

  async get(id: number): Promise<Webhook | null> {
    const row = await this.db.selectFrom('webhooks').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toWebhook(row) : null;
  }

  /** Replace a webhook's fields; null when it does not exist. */
  async update(id: number, input: WebhookInput, now = Date.now()): Promise<Webhook | null> {
    const row = await this.db
      .updateTable('webhooks')
      .set({ ...columnsOf(input), updated_at: now })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row ? toWebhook(row) : null;
  }

  /** Remove a webhook with its deliveries and their attempts; false when it did not exist. */
  async delete(id: number): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const ids = trx.selectFrom('webhook_deliveries').select('id').where('webhook_id', '=', id);
      await trx.deleteFrom('webhook_attempts').where('delivery_id', 'in', ids).execute();
      await trx.deleteFrom('webhook_deliveries').where('webhook_id', '=', id).execute();
      const gone = await trx.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
      return Number(gone.numDeletedRows) > 0;
    });
  }

  async insertDeliveries(deliveries: readonly NewDelivery[], now: number, giveUpAt: number): Promise<void> {
    await insertDeliveries(this.db, deliveries, now, giveUpAt);
  }

  async getDelivery(id: string): Promise<Delivery | null> {
    const row = await this.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toDelivery(row) : null;
  }

  /** A webhook's newest `limit` deliveries (newest first), with every attempt of each. */
  async deliveriesOf(
    webhookId: number,
    limit: number,
  ): Promise<{ deliveries: Delivery[]; attempts: Attempt[] }> {
    const deliveries = (
      await this.db
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('webhook_id', '=', webhookId)
        .orderBy('seq', 'desc')
        .limit(limit)
        .execute()
    ).map(toDelivery);
    if (deliveries.length === 0) return { deliveries, attempts: [] };
    const attempts = (
      await this.db
        .selectFrom('webhook_attempts')
        .selectAll()
        .where(
          'delivery_id',
          'in',
          deliveries.map((d) => d.id),
        )
        .orderBy('seq', 'desc')
        .execute()
    ).map(toAttempt);
    return { deliveries, attempts };
  }

  /**
   * Claim up to `limit` due deliveries for one attempt each: leased until `leaseUntil`, so no
   * other dispatcher (this node's or another's) sends them meanwhile. A dispatcher that dies
   * with a claim loses it when the lease ends, and the attempt is made again.
   */
  async claimDue(limit: number, leaseUntil: number, now = Date.now()): Promise<Delivery[]> {
    return this.db.transaction().execute(async (trx) => {
      let q = trx
        .selectFrom('webhook_deliveries')
        .select('seq')
        .where('state', '=', 'pending')
        .where('next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .orderBy('next_attempt_at')
        .orderBy('seq')
        .limit(limit);
      if (this.dialect === 'postgres') q = q.forUpdate().skipLocked();
      const seqs = (await q.execute()).map((r) => Number(r.seq));
      if (seqs.length === 0) return [];
      const rows = await trx
        .updateTable('webhook_deliveries')
        .set({ lease_until: leaseUntil })
        .where('seq', 'in', seqs)
        .returningAll()
        .execute();
      return rows.map(toDelivery);
    });
  }

  /**
   * Record an attempt of a delivery this dispatcher claimed with `leaseUntil`. Nothing is written
   * when the lease was lost meanwhile (another dispatcher now owns the delivery). Returns the
   * delivery's new state, or null when nothing was written.
   */
  async recordAttempt(
    delivery: Delivery,
    leaseUntil: number,
    outcome: AttemptOutcome,
    now = Date.now(),
  ): Promise<DeliveryState | null> {
    const state: DeliveryState = outcome.delivered
      ? 'delivered'
      : outcome.nextAttemptAt === null
        ? 'failed'
        : 'pending';
    const attempt = delivery.attempts + 1;
    return this.db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('webhook_deliveries')
        .set({
          state,
          attempts: attempt,
          next_attempt_at: state === 'pending' ? outcome.nextAttemptAt : null,
          delivered_at: outcome.delivered ? now : null,
          lease_until: null,
        })
        .where('id', '=', delivery.id)
        .where('lease_until', '=', leaseUntil)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) return null;
      await trx
        .insertInto('webhook_attempts')
        .values({
          delivery_id: delivery.id,
          attempt,
          status_code: outcome.statusCode,
          error: outcome.error,
          duration_ms: Math.round(outcome.durationMs),
          next_attempt_at: state === 'pending' ? outcome.nextAttemptAt : null,
          delivered_at: outcome.delivered ? now : null,
          at: now,
        })
        .execute();
      return state;
    });
  }

  /**
   * Give back every claim: at start-up on SQLite, where the store is this process's alone and
   * a claim left behind belonged to a process that died mid-attempt (that attempt is made again).
   */
  async releaseClaims(): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ lease_until: null })
      .where('state', '=', 'pending')
      .where('lease_until', 'is not', null)
      .execute();
  }

  /**
   * Remove up to `limit` finished (delivered or failed) deliveries made before `before`, with
   * their attempts. Returns how many went.
   */
  async prune(before: number, limit: number): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      const ids = (
        await trx
          .selectFrom('webhook_deliveries')
          .select('id')
          .where('state', '<>', 'pending')
          .where('created_at', '<', before)
          .orderBy('created_at')
          .limit(limit)
          .execute()
      ).map((r) => r.id);
      if (ids.length === 0) return 0;
      await trx.deleteFrom('webhook_attempts').where('delivery_id', 'in', ids).execute();
      await trx.deleteFrom('webhook_deliveries').where('id', 'in', ids).execute();
      return ids.length;
    });
  }

  /**
   * Send a delivery again: pending and due now, with a new retry window until `giveUpAt`. Not
   * while a dispatcher is sending it (its claim runs past `now`): that attempt's outcome would
   * overwrite the request. Returns the delivery, `'busy'` then, or null when there is none.
   */
  async redeliver(id: string, now: number, giveUpAt: number): Promise<Delivery | 'busy' | null> {
    const row = await this.db
      .updateTable('webhook_deliveries')
      .set({ state: 'pending', next_attempt_at: now, give_up_at: giveUpAt, lease_until: null })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .returningAll()
      .executeTakeFirst();
    if (row) return toDelivery(row);
    return (await this.getDelivery(id)) ? 'busy' : null;
  }
}

function columnsOf(input: WebhookInput) {
  return {
    url: input.url,
    secret: input.secret,
    events: JSON.stringify(input.events),
    kinds: JSON.stringify(input.kinds),
    enabled: input.enabled ? 1 : 0,
  };
}
