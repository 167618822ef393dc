import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(scryptCb) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: object,
) => Promise<Buffer>;
const PARAMS = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_LENGTH = 32;

/** Hash a password with scrypt and a random salt: `scrypt$N$r$p$salt$hash` (base64url). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEY_LENGTH, PARAMS);
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64url'), key.toString('base64url')].join(
    '$',
  );
}

/** Check a password against a stored hash in constant time. A malformed hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await scrypt(password, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: PARAMS.maxmem,
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A random password for the first start, readable enough to type. */
export function generatePassword(): string {
  return randomBytes(12).toString('base64url');
}

/** The suffix AList appends to a password before hashing it for `/api/auth/login/hash`. */
export const STATIC_HASH_SALT = 'https://github.com/alist-org/alist';

/**
 * AList's static hash of a password: hex sha256 of `<password>-<STATIC_HASH_SALT>`. AList's web UI
 * and SDKs compute it in the client and send it to `/api/auth/login/hash` instead of the password.
 * It is as good as a password to whoever holds it, so ferry stores only a slow hash of it.
 */
export function staticHash(password: string): string {
  return createHash('sha256').update(`${password}-${STATIC_HASH_SALT}`).digest('hex');
}

/** What the users table keeps of a password: its slow hash, and the slow hash of its static hash. */
export async function passwordHashes(
  password: string,
): Promise<{ passwordHash: string; staticHash: string }> {
  const [passwordHash, hashOfStatic] = await Promise.all([
    hashPassword(password),
    hashPassword(staticHash(password)),
  ]);
  return { passwordHash, staticHash: hashOfStatic };
}
