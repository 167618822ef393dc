import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { FerryError } from '../errors.ts';
import type { Database } from '../store/schema.ts';

/** The `meta` key of the links' secret: its own, so rotating the JWT secret leaves links alone. */
const SECRET_KEY = 'link_secret';

/**
 * Signed download links, as AList's `sign` setting makes them: anyone holding the link of a file
 * may download it (`/d/<path>?sign=…`, `/p/<path>?sign=…`) without a token, and the link opens
 * that one path and nothing else.
 *
 * A sign is `base64url(HMAC-SHA256(secret, "<path>:<expire>")) + ":" + <expire>`, with the
 * padded URL alphabet Go's `base64.URLEncoding` uses, over the absolute virtual path; `expire` is
 * a Unix time in seconds, 0 for a link that never expires (AList's default `link_expiration`).
 * The secret is made on first start and kept in the store's `meta` table, so every node of a
 * shared store signs alike and links outlive restarts.
 */
export class LinkSigner {
  private constructor(
    private readonly secret: Buffer,
    /** Lifetime of the links `sign` makes, in hours; 0: they never expire. */
    private readonly expireHours: number,
  ) {}

  /** Load the links' secret from the store, creating it on first start. */
  static async open(db: Kysely<Database>, options: { expireHours?: number } = {}): Promise<LinkSigner> {
    const read = () => db.selectFrom('meta').select('value').where('key', '=', SECRET_KEY).executeTakeFirst();
    let row = await read();
    if (!row) {
      // Another node starting at the same moment may insert first: then its secret stands.
      await db
        .insertInto('meta')
        .values({ key: SECRET_KEY, value: randomBytes(32).toString('base64url') })
        .onConflict((oc) => oc.doNothing())
        .execute();
      row = await read();
    }
    if (!row) throw new FerryError('E_INTERNAL', 'could not create the link secret');
    return new LinkSigner(Buffer.from(row.value, 'base64url'), options.expireHours ?? 0);
  }

  /** The sign of `path` (an absolute, normalised virtual path) with the configured lifetime. */
  sign(path: string): string {
    const expire = this.expireHours > 0 ? Math.floor(Date.now() / 1000) + this.expireHours * 3600 : 0;
    return this.signUntil(path, expire);
  }

  /** The sign of `path` valid until `expire` (Unix seconds; 0: forever). */
  signUntil(path: string, expire: number): string {
    return `${this.mac(path, expire)}:${expire}`;
  }

  /**
   * Check that `sign` was made by this server for exactly `path` and has not expired. Throws
   * `E_UNAUTHORIZED` with AList's messages: `expire missing`, `expire invalid`, `sign expired`,
   * `sign invalid`. A trailing `/` on the sign is ignored, as AList does (some clients add one).
   */
  verify(path: string, sign: string): void {
    const trimmed = sign.endsWith('/') ? sign.slice(0, -1) : sign;
    const colon = trimmed.lastIndexOf(':');
    const exp = colon < 0 ? '' : trimmed.slice(colon + 1);
    if (exp === '') throw new FerryError('E_UNAUTHORIZED', 'expire missing');
    if (!/^\d{1,15}$/.test(exp)) throw new FerryError('E_UNAUTHORIZED', 'expire invalid');
    const expire = Number(exp);
    if (expire !== 0 && expire < Date.now() / 1000) throw new FerryError('E_UNAUTHORIZED', 'sign expired');
    const given = Buffer.from(trimmed.slice(0, colon));
    const wanted = Buffer.from(this.mac(path, expire));
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted))
      throw new FerryError('E_UNAUTHORIZED', 'sign invalid');
  }

  private mac(path: string, expire: number): string {
    const digest = createHmac('sha256', this.secret).update(`${path}:${expire}`).digest('base64url');
    // Go's base64.URLEncoding pads; Node's base64url does not.
    return digest.padEnd(Math.ceil(digest.length / 4) * 4, '=');
  }
}
