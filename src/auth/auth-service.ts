import { randomBytes, webcrypto } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Kysely } from 'kysely';
import { FerryError } from '../errors.ts';
import { normalizePath } from '../storage/paths.ts';
import type { Database } from '../store/schema.ts';
import type { User, UserStore } from '../store/user-store.ts';
import { generatePassword, hashPassword, verifyPassword } from './passwords.ts';
import { type Principal, ROLE } from './roles.ts';

export const ADMIN_USERNAME = 'admin';
export const GUEST_USERNAME = 'guest';

export interface UserInput {
  username?: unknown;
  password?: unknown;
  base_path?: unknown;
  role?: unknown;
  permission?: unknown;
  disabled?: unknown;
}

/** How many verified tokens `authenticate` remembers (about one per active session). */
const VERIFIED_TOKENS = 1024;

/**
 * Users, logins and tokens. Tokens are HS256 JWTs carrying the username and the password's
 * timestamp, so changing a password ends every older session. The signing secret is made on
 * first start and kept in the database.
 */
export class AuthService {
  /**
   * Tokens whose signature was checked, with their claims: a client sends the same token with
   * every request, and checking an HMAC through WebCrypto costs more than the rest of a small
   * request. Keyed by the whole token, so only a byte-identical token hits; expiry is checked
   * on every hit, and the user (password change, disabled) is still looked up every time.
   */
  private readonly verified = new Map<string, Record<string, unknown>>();

  private constructor(
    private readonly users: UserStore,
    /** The signing secret, imported once: jose would import raw bytes again for every token. */
    private readonly secret: webcrypto.CryptoKey,
    private readonly tokenHours: number,
  ) {}

  static async open(db: Kysely<Database>, users: UserStore, tokenHours: number): Promise<AuthService> {
    let row = await db
      .selectFrom('meta')
      .select('value')
      .where('key', '=', 'token_secret')
      .executeTakeFirst();
    if (!row) {
      const value = randomBytes(32).toString('base64url');
      await db
        .insertInto('meta')
        .values({ key: 'token_secret', value })
        .onConflict((oc) => oc.doNothing())
        .execute();
      row = await db
        .selectFrom('meta')
        .select('value')
        .where('key', '=', 'token_secret')
        .executeTakeFirstOrThrow();
    }
    const key = await webcrypto.subtle.importKey(
      'raw',
      Buffer.from(row.value, 'base64url'),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    );
    return new AuthService(users, key, tokenHours);
  }

  /**
   * Create `admin` and the built-in `guest` on first start. Returns the admin password when it
   * had to be generated (the caller prints it once), else null.
   */
  async ensureDefaultUsers(adminPassword: string | undefined): Promise<string | null> {
    let generated: string | null = null;
    // Another node starting on the same store at the same moment may insert them first: then
    // its admin stands, and only the node whose insert won prints a generated password.
    if (!(await this.users.byName(ADMIN_USERNAME))) {
      const password = adminPassword ?? generatePassword();
      const inserted = await this.users.insert({
        username: ADMIN_USERNAME,
        passwordHash: await hashPassword(password),
        passwordTs: Date.now(),
        basePath: '/',
        role: ROLE.ADMIN,
        permission: 0xffff,
        disabled: false,
      });
      if (inserted && !adminPassword) generated = password;
    }
    if (!(await this.users.byName(GUEST_USERNAME))) {
      await this.users.insert({
        username: GUEST_USERNAME,
        passwordHash: 'none',
        passwordTs: Date.now(),
        basePath: '/',
        role: ROLE.GUEST,
        permission: 0,
        disabled: true,
      });
    }
    return generated;
  }

  /** Check a username and password; returns a token. One message for every failure. */
  async login(username: unknown, password: unknown): Promise<string> {
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw new FerryError('E_BAD_REQUEST', 'username and password must be strings');
    }
    const user = await this.users.byName(username);
    const ok = user && !user.disabled && (await verifyPassword(password, user.passwordHash));
    if (!user || !ok) throw new FerryError('E_BAD_REQUEST', 'password is incorrect or user does not exist');
    return this.issueToken(user);
  }

  async issueToken(user: User): Promise<string> {
    return new SignJWT({ username: user.username, pwd_ts: user.passwordTs })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt()
      .setExpirationTime(`${this.tokenHours}h`)
      .sign(this.secret);
  }

  /**
   * Who a request is. With no token, the built-in guest when it is enabled, else E_UNAUTHORIZED.
   * An invalid or expired token, a changed password or a disabled user: E_UNAUTHORIZED.
   */
  async authenticate(token: string | undefined): Promise<Principal> {
    if (!token) {
      const guest = await this.users.byName(GUEST_USERNAME);
      if (!guest || guest.disabled)
        throw new FerryError('E_UNAUTHORIZED', 'Guest user is disabled, login please');
      return toPrincipal(guest);
    }
    const claims = await this.claimsOf(token);
    const user = typeof claims.username === 'string' ? await this.users.byName(claims.username) : null;
    if (!user || user.passwordTs !== claims.pwd_ts)
      throw new FerryError('E_UNAUTHORIZED', 'token is invalidated');
    if (user.disabled) throw new FerryError('E_UNAUTHORIZED', 'current user is disabled');
    return toPrincipal(user);
  }

  /** The claims of a token signed by this server and not expired; else E_UNAUTHORIZED. */
  private async claimsOf(token: string): Promise<Record<string, unknown>> {
    const known = this.verified.get(token);
    if (known && typeof known.exp === 'number' && known.exp * 1000 > Date.now()) return known;
    this.verified.delete(token);
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(token, this.secret, { algorithms: ['HS256'] }));
    } catch (err) {
      const expired = err instanceof joseErrors.JWTExpired;
      throw new FerryError('E_UNAUTHORIZED', expired ? 'token is expired' : 'token is invalidated', {
        cause: err,
      });
    }
    if (this.verified.size >= VERIFIED_TOKENS)
      this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(token, claims);
    return claims;
  }

  /** A user's id by name, or null (for list filters). */
  async userIdByName(username: string): Promise<number | null> {
    return (await this.users.byName(username))?.id ?? null;
  }

  listUsers(): Promise<User[]> {
    return this.users.list();
  }

  async createUser(input: UserInput): Promise<User> {
    const username = requireString(input.username, 'username');
    const password = requireString(input.password, 'password');
    const exists = () => new FerryError('E_EXISTS', `user ${username} already exists`);
    if (await this.users.byName(username)) throw exists();
    const user = await this.users.insert({
      username,
      passwordHash: await hashPassword(password),
      passwordTs: Date.now(),
      basePath: input.base_path === undefined ? '/' : normalizePath(input.base_path),
      role: optionalRole(input.role) ?? ROLE.GENERAL,
      permission: optionalInt(input.permission, 'permission') ?? 0,
      disabled: input.disabled === true,
    });
    if (!user) throw exists(); // created meanwhile, by a request racing this one
    return user;
  }

  /** Update a user; a non-empty `password` changes it (and ends its sessions). */
  async updateUser(id: unknown, input: UserInput): Promise<User> {
    const userId = optionalInt(id, 'id');
    const existing = userId === undefined ? null : await this.users.byId(userId);
    if (!existing) throw new FerryError('E_BAD_REQUEST', 'user not found');
    const password = typeof input.password === 'string' && input.password !== '' ? input.password : undefined;
    const username = input.username === undefined ? undefined : requireString(input.username, 'username');
    if (username && username !== existing.username && (await this.users.byName(username))) {
      throw new FerryError('E_EXISTS', `user ${username} already exists`);
    }
    const demoted = input.role !== undefined && input.role !== ROLE.ADMIN;
    if (
      existing.username === ADMIN_USERNAME &&
      (input.disabled === true || demoted || (username && username !== ADMIN_USERNAME))
    ) {
      throw new FerryError('E_FORBIDDEN', 'the admin user cannot be disabled, demoted or renamed');
    }
    const updated = await this.users.update(existing.id, {
      ...(username !== undefined && { username }),
      ...(password !== undefined && { passwordHash: await hashPassword(password), passwordTs: Date.now() }),
      ...(input.base_path !== undefined && { basePath: normalizePath(input.base_path) }),
      ...(input.role !== undefined && { role: optionalRole(input.role) }),
      ...(input.permission !== undefined && { permission: optionalInt(input.permission, 'permission') }),
      ...(input.disabled !== undefined && { disabled: input.disabled === true }),
    });
    if (!updated) throw new FerryError('E_BAD_REQUEST', 'user not found');
    return updated;
  }

  async deleteUser(id: unknown): Promise<void> {
    const userId = optionalInt(id, 'id');
    const existing = userId === undefined ? null : await this.users.byId(userId);
    if (!existing) throw new FerryError('E_BAD_REQUEST', 'user not found');
    if (existing.username === ADMIN_USERNAME || existing.username === GUEST_USERNAME) {
      throw new FerryError('E_FORBIDDEN', `the ${existing.username} user cannot be deleted`);
    }
    await this.users.delete(existing.id);
  }

  /** Set a user's password by name (CLI `user passwd`). */
  async setPassword(username: string, password: string): Promise<void> {
    const user = await this.users.byName(username);
    if (!user) throw new FerryError('E_BAD_REQUEST', `no user ${username}`);
    await this.users.update(user.id, { passwordHash: await hashPassword(password), passwordTs: Date.now() });
  }
}

export function toPrincipal(user: User): Principal {
  return {
    id: user.id,
    username: user.username,
    role: user.role,
    basePath: user.basePath,
    permission: user.permission,
  };
}

function requireString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > 256) {
    throw new FerryError('E_BAD_REQUEST', `${field} must be a non-empty string`);
  }
  return value;
}

function optionalInt(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new FerryError('E_BAD_REQUEST', `${field} must be an integer`);
  return value;
}

function optionalRole(value: unknown): number | undefined {
  const role = optionalInt(value, 'role');
  if (role !== undefined && role !== ROLE.GENERAL && role !== ROLE.GUEST && role !== ROLE.ADMIN) {
    throw new FerryError('E_BAD_REQUEST', 'role must be 0 (general), 1 (guest) or 2 (admin)');
  }
  return role;
}
