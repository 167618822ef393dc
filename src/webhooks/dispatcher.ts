import type { Logger } from 'pino';
import type { Agent, request as undiciRequest } from 'undici';
import type { WebhooksConfig } from '../config.ts';
import type { HostPolicy } from '../download/url-policy.ts';
import { coerceError } from '../errors.ts';
import type { DeliveryOutcome } from '../metrics.ts';
import type { AttemptOutcome, WebhookStore } from '../store/webhook-store.ts';
import type { Delivery } from './model.ts';
import { signature } from './signature.ts';

/** Most bytes of a receiver's answer read (into the attempt's error on failure); the rest is dropped. */
const ANSWER_BYTES = 512;
/** How often finished deliveries past their retention are deleted, and how many per statement. */
const SWEEP_INTERVAL_MS = 10 * 60 * 1000;
const SWEEP_BATCH = 500;
/** A claim outlives the attempt's timeout by this much, so a slow attempt never loses its claim. */
const CLAIM_SLACK_MS = 30_000;

export interface DispatcherDeps {
  store: WebhookStore;
  policy: HostPolicy;
  config: WebhooksConfig;
  log: Logger;
  /** Told of each recorded attempt's outcome (the metrics counter). */
  counted?: (outcome: DeliveryOutcome) => void;
  userAgent: string;
}

/**
 * The delay before attempt `attempt + 1` after `attempt` failed: exponential from `base`, capped
 * at `max`, with jitter (between half and all of it) so receivers coming back are not hit by
 * every sender at once.
 */
export function retryDelay(attempt: number, base: number, max: number, random = Math.random()): number {
  const full = Math.min(max, base * 2 ** Math.min(30, attempt - 1));
  return Math.round(full / 2 + (full / 2) * random);
}

/**
 * Sends due webhook deliveries. Each node runs one; a delivery is claimed in the store before it
 * is sent (`WebhookStore.claimDue`), so two nodes never send the same attempt at once. Every
 * attempt connects through the host policy's lookup, so a name that came to point at a
 * link-local or metadata address is refused when it is sent, not only when it was created.
 */
export class WebhookDispatcher {
  /**
   * The HTTP client, loaded on the first attempt: undici costs a server that sends no webhook
   * (most of them) memory for nothing, as the offline downloader's is loaded on first use too.
   */
  private client: Promise<{ agent: Agent; request: typeof undiciRequest }> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  private stopped = true;
  /** Aborted by `stop`: attempts under way end at once (recorded, retried later) rather than holding up shutdown. */
  private shutdown = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly deps: DispatcherDeps) {}

  private http(): Promise<{ agent: Agent; request: typeof undiciRequest }> {
    this.client ??= import('undici').then(({ Agent, request }) => ({
      // No proxy: receivers are the admin's own services, often on this machine or network.
      agent: new Agent({
        connect: { timeout: this.deps.config.timeoutMs, lookup: this.deps.policy.lookup },
        keepAliveTimeout: 4000,
      }),
      request,
    }));
    return this.client;
  }

  start(): void {
    this.stopped = false;
    this.shutdown = new AbortController();
    this.timer = setInterval(() => this.wake(), this.deps.config.pollIntervalMs);
    this.timer.unref();
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    this.wake();
  }

  /** Delete finished deliveries past `retentionHours` (any node may; the deletes are idempotent). */
  async sweep(now = Date.now()): Promise<void> {
    const before = now - this.deps.config.retentionHours * 3600_000;
    try {
      while (!this.stopped && (await this.deps.store.prune(before, SWEEP_BATCH)) === SWEEP_BATCH);
    } catch (err) {
      this.deps.log.warn({ err }, 'webhook delivery sweep failed');
    }
  }

  /** Stop claiming; attempts under way are cut short and recorded as failed, to be retried. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.shutdown.abort(new Error('ferry is shutting down'));
    if (this.timer) clearInterval(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    this.timer = null;
    this.sweeper = null;
    await Promise.allSettled([...this.inFlight]);
    const client = await this.client?.catch(() => null);
    await client?.agent.close().catch(() => undefined);
  }

  /** Look for due deliveries soon (new ones were just written). Calls coalesce. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.drain()
      .catch((err) => this.deps.log.warn({ err }, 'webhook dispatch failed'))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** Claim and send while there is room and due work. */
  private async drain(): Promise<void> {
    const { store, config } = this.deps;
    while (!this.stopped) {
      const free = config.concurrency - this.inFlight.size;
      if (free <= 0) return;
      const leaseUntil = Date.now() + config.timeoutMs + CLAIM_SLACK_MS;
      const claimed = await store.claimDue(free, leaseUntil);
      for (const delivery of claimed) {
        const attempt: Promise<void> = this.attempt(delivery, leaseUntil)
          .catch((err) => this.deps.log.warn({ err, delivery: delivery.id }, 'webhook attempt not recorded'))
          .finally(() => {
            this.inFlight.delete(attempt);
            this.wake();
          });
        this.inFlight.add(attempt);
      }
      if (claimed.length < free) return;
    }
  }

  /** Send one attempt of `delivery` and record how it ended. */
  private async attempt(delivery: Delivery, leaseUntil: number): Promise<void> {
    const { store, config, log } = this.deps;
    const hook = await store.get(delivery.webhookId);
    const started = performance.now();
    let outcome: Omit<AttemptOutcome, 'nextAttemptAt'>;
    if (!hook) {
      outcome = { statusCode: null, error: 'the webhook was deleted', durationMs: 0, delivered: false };
    } else {
      outcome = await this.send(hook.url, hook.secret, delivery).catch((err: unknown) => ({
        statusCode: null,
        error: this.shutdown.signal.aborted ? 'ferry shut down during the attempt' : describe(err),
        durationMs: performance.now() - started,
        delivered: false,
      }));
    }
    const now = Date.now();
    let nextAttemptAt: number | null = null;
    if (!outcome.delivered && hook) {
      const at = now + retryDelay(delivery.attempts + 1, config.retryBaseDelayMs, config.retryMaxDelayMs);
      if (at <= delivery.giveUpAt) nextAttemptAt = at;
    }
    const state = await store.recordAttempt(delivery, leaseUntil, { ...outcome, nextAttemptAt }, now);
    if (state === null) return;
    const counted: DeliveryOutcome =
      state === 'delivered' ? 'delivered' : state === 'failed' ? 'failed' : 'retry';
    this.deps.counted?.(counted);
    if (state === 'failed')
      log.warn(
        { delivery: delivery.id, webhook: delivery.webhookId, error: outcome.error },
        'webhook delivery failed for good',
      );
  }

  /** POST the delivery's body, signed; a 2xx answer delivers it. */
  private async send(
    url: string,
    secret: string,
    delivery: Delivery,
  ): Promise<Omit<AttemptOutcome, 'nextAttemptAt'>> {
    const { config, policy } = this.deps;
    const target = new URL(url);
    // An address literal in the URL never goes through the lookup: check it here.
    policy.checkName(target.hostname);
    const timestamp = Math.floor(Date.now() / 1000);
    const { agent, request } = await this.http();
    const started = performance.now();
    const signal = AbortSignal.any([AbortSignal.timeout(config.timeoutMs), this.shutdown.signal]);
    const res = await request(target, {
      method: 'POST',
      dispatcher: agent,
      signal,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
      headers: {
        'content-type': 'application/json',
        'user-agent': this.deps.userAgent,
        'x-ferry-event': delivery.event,
        'x-ferry-delivery': delivery.id,
        'x-ferry-timestamp': String(timestamp),
        'x-ferry-signature': signature(secret, timestamp, delivery.body),
      },
      body: delivery.body,
    });
    const answer = await readSome(res.body, ANSWER_BYTES);
    const durationMs = performance.now() - started;
    const delivered = res.statusCode >= 200 && res.statusCode < 300;
    return {
      statusCode: res.statusCode,
      error: delivered ? '' : `HTTP ${res.statusCode}${answer ? `: ${answer}` : ''}`,
      durationMs,
      delivered,
    };
  }
}

/** The first `limit` bytes of a body as text; the rest is read and dropped so the connection can be reused. */
async function readSome(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < limit) chunks.push(chunk.subarray(0, limit - size));
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim();
}

function describe(err: unknown): string {
  const e = coerceError(err);
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'timed out';
  const code = (e as NodeJS.ErrnoException).code;
  return code && !e.message.includes(code) ? `${e.message} (${code})` : e.message;
}
