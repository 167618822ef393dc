import { createHash, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Kysely } from 'kysely';
import { FerryError } from '../errors.ts';
import type { Database } from '../store/schema.ts';

/** How many verified tokens a `TokenSigner` remembers (about one per active session). */
const VERIFIED_TOKENS = 1024;

/** What ferry puts in a token (AList's claims, plus an id a logout can revoke). */
export interface TokenClaims {
  username: string;
  /** The password's timestamp when the token was issued: a password change ends older tokens. */
  pwdTs: number;
  /** Names this token in `revoked_tokens` (see `tokenIdOf`). */
  id: string;
  /** Expiry, ms since the epoch. */
  expiresAt: number;
}

/**
 * Signs and checks ferry's tokens: HS256 JWTs with AList's claims (`username`, `pwd_ts`) and a
 * `jti`. The signing secret is made on first start and kept in the database, so every node of a
 * store accepts every node's tokens. Whether a token was revoked is not decided here: that is in
 * the store, asked on every request (`AuthService.authenticate`).
 */
export class TokenSigner {
  /**
   * Tokens whose signature was checked, with their claims: a client sends the same token with
   * every request, and checking an HMAC through WebCrypto costs more than the rest of a small
   * request. Keyed by the whole token, so only a byte-identical token hits; expiry is checked on
   * every hit. Only the signature is remembered: the user and the token's revocation are still
   * looked up every time.
   */
  private readonly verified = new Map<string, TokenClaims>();

  private constructor(
    /** The signing secret, imported once: jose would import raw bytes again for every token. */
    private readonly secret: webcrypto.CryptoKey,
    private readonly tokenHours: number,
  ) {}

  /** The signer of the store `db`, creating its secret on first start. */
  static async open(db: Kysely<Database>, tokenHours: number): Promise<TokenSigner> {
    const read = () =>
      db.selectFrom('meta').select('value').where('key', '=', 'token_secret').executeTakeFirst();
    let row = await read();
    if (!row) {
      const value = randomBytes(32).toString('base64url');
      // Another node starting at the same moment may insert first: then its secret stands.
      await db
        .insertInto('meta')
        .values({ key: 'token_secret', value })
        .onConflict((oc) => oc.doNothing())
        .execute();
      row = await read();
      if (!row) throw new FerryError('E_INTERNAL', 'the token secret could not be stored');
    }
    const key = await webcrypto.subtle.importKey(
      'raw',
      Buffer.from(row.value, 'base64url'),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    );
    return new TokenSigner(key, tokenHours);
  }

  /** A new token for `username` whose password carries the timestamp `pwdTs`. */
  sign(username: string, pwdTs: number): Promise<string> {
    return new SignJWT({ username, pwd_ts: pwdTs })
      .setProtectedHeader({ alg: 'HS256' })
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(`${this.tokenHours}h`)
      .sign(this.secret);
  }

  /**
   * The claims of a token signed with this store's secret and not expired. E_UNAUTHORIZED for an
   * expired, forged or malformed token.
   */
  async verify(token: string): Promise<TokenClaims> {
    const known = this.verified.get(token);
    if (known && known.expiresAt > Date.now()) return known;
    this.verified.delete(token);
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.secret, { algorithms: ['HS256'] }));
    } catch (err) {
      const expired = err instanceof joseErrors.JWTExpired;
      throw new FerryError('E_UNAUTHORIZED', expired ? 'token is expired' : 'token is invalidated', {
        cause: err,
      });
    }
    const { username, pwd_ts: pwdTs, exp } = payload;
    if (typeof username !== 'string' || typeof pwdTs !== 'number' || typeof exp !== 'number')
      throw new FerryError('E_UNAUTHORIZED', 'token is invalidated');
    const claims: TokenClaims = { username, pwdTs, id: tokenIdOf(token, payload.jti), expiresAt: exp * 1000 };
    if (this.verified.size >= VERIFIED_TOKENS)
      this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(token, claims);
    return claims;
  }

  /** Forget a token's verified signature (after a logout: nothing on this node may trust it). */
  forget(token: string): void {
    this.verified.delete(token);
  }
}

/**
 * The id a token is revoked by: its `jti`, or for a token issued before ferry gave ids, the digest
 * of the token itself (prefixed, so the two never collide).
 */
function tokenIdOf(token: string, jti: unknown): string {
  if (typeof jti === 'string' && jti !== '') return jti;
  return `sha256:${createHash('sha256').update(token).digest('base64url')}`;
}
