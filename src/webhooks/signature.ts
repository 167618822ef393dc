import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * `X-Ferry-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the webhook's secret, of
 * the timestamp (`X-Ferry-Timestamp`, unix seconds), a dot and the raw body. Signing the
 * timestamp lets a receiver refuse a replayed old request.
 */
export function signature(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** Whether `header` is the signature of `body` at `timestamp` (constant time): what a receiver checks. */
export function verifySignature(secret: string, timestamp: number, body: string, header: string): boolean {
  const expected = Buffer.from(signature(secret, timestamp, body));
  const given = Buffer.from(header);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
