import { type Kysely, sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from './schema.ts';

/** Wait before listening again after the listening connection dropped. */
const RECONNECT_MS = 1000;

/**
 * One PostgreSQL LISTEN/NOTIFY channel. `publish` sends a payload through the store's pool (at
 * most 8,000 bytes: PostgreSQL's limit); `onNotice` hears every payload sent on the channel, by
 * any node, over one connection of its own that is opened again after it drops. Payloads sent
 * while it was down are lost: they are hints, the store is the truth.
 */
export class PgNotices {
  private client: import('pg').Client | null = null;
  private handler: (payload: string) => void = () => undefined;
  private closed = false;
  private retry: NodeJS.Timeout | null = null;

  private constructor(
    private readonly db: Kysely<Database>,
    private readonly url: string,
    private readonly channel: string,
    private readonly log: Logger,
  ) {}

  /** Listen on `channel` (a plain identifier) of the database at `url`. */
  static async open(db: Kysely<Database>, url: string, channel: string, log: Logger): Promise<PgNotices> {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`bad channel name ${channel}`);
    const notices = new PgNotices(db, url, channel, log);
    await notices.listen();
    return notices;
  }

  onNotice(handler: (payload: string) => void): void {
    this.handler = handler;
  }

  async publish(payload: string): Promise<void> {
    await sql`select pg_notify(${this.channel}, ${payload})`.execute(this.db);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: this.url });
    const lost = (err?: Error) => {
      if (this.client !== client) return;
      this.client = null;
      client.end().catch(() => undefined);
      if (this.closed) return;
      this.log.warn({ err }, 'lost the connection that hears the other nodes; listening again');
      this.listenLater();
    };
    client.on('notification', (n) => {
      if (n.channel === this.channel && n.payload !== undefined) this.handler(n.payload);
    });
    client.on('error', lost);
    client.on('end', () => lost());
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch (err) {
      if (this.client === client) this.client = null;
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  private listenLater(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.listen().catch((err) => {
        this.log.warn({ err }, 'cannot listen for the other nodes yet');
        this.listenLater();
      });
    }, RECONNECT_MS);
  }
}
