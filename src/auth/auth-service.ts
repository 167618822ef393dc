import type { Kysely } from 'kysely';
import { FerryError } from '../errors.ts';
import { normalizePath } from '../storage/paths.ts';
import type { Database } from '../store/schema.ts';
import type { NewUser, User, UserStore } from '../store/user-store.ts';
import { generatePassword, hashPassword, passwordHashes, staticHash, verifyPassword } from './passwords.ts';
import { isGuest, type Principal, ROLE } from './roles.ts';
import { TokenSigner } from './tokens.ts';
import { optionalInt, optionalRole, requireString, type UserInput } from './user-input.ts';

export type { UserInput } from './user-input.ts';
export type { User };

export const ADMIN_USERNAME = 'admin';
export const GUEST_USERNAME = 'guest';

/** The one answer to every failed login, whatever failed: nothing tells which names exist. */
const LOGIN_FAILED = 'password is incorrect or user does not exist';

let noUserHash: Promise<string> | undefined;

/**
 * A hash to check when the user does not exist, so that such a login costs what a wrong password
 * costs and its timing does not tell which names exist either. Made at the first login.
 */
function noUserHashOf(): Promise<string> {
  noUserHash ??= hashPassword(generatePassword());
  return noUserHash;
}

/**
 * Users, logins and tokens. Tokens carry the username and the password's timestamp (as AList's
 * do), so a password change or a rename ends every older session, and an id that a logout revokes
 * in the store, so the logout holds on every node of the store.
 */
export class AuthService {
  private constructor(
    private readonly users: UserStore,
    private readonly tokens: TokenSigner,
  ) {}

  static async open(db: Kysely<Database>, users: UserStore, tokenHours: number): Promise<AuthService> {
    return new AuthService(users, await TokenSigner.open(db, tokenHours));
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
        ...(await passwordHashes(password)),
        passwordTs: Date.now(),
        basePath: '/',
        role: ROLE.ADMIN,
        permission: 0xffff,
        disabled: false,
      });
      if (inserted && !adminPassword) generated = password;
    }
    if (!(await this.users.byName(GUEST_USERNAME))) {
      // The guest has no password: 'none' is no hash, so no login as guest ever succeeds.
      await this.users.insert({
        username: GUEST_USERNAME,
        passwordHash: 'none',
        staticHash: '',
        passwordTs: Date.now(),
        basePath: '/',
        role: ROLE.GUEST,
        permission: 0,
        disabled: true,
      });
    }
    return generated;
  }

  /**
   * `POST /api/auth/login`: check a username and password; returns a token. E_BAD_REQUEST with
   * one message for every failure.
   *
   * A user whose password was set before ferry kept AList's static hash (migration 3) gets it
   * here, at its first plain login since: until then its hashed logins (`loginHash`) fail.
   */
  async login(username: unknown, password: unknown): Promise<string> {
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw new FerryError('E_BAD_REQUEST', 'username and password must be strings');
    }
    const user = await this.users.byName(username);
    const ok = await verifyPassword(password, user?.passwordHash ?? (await noUserHashOf()));
    if (!user || user.disabled || !ok) throw new FerryError('E_BAD_REQUEST', LOGIN_FAILED);
    if (user.staticHash === '')
      await this.users.fillStaticHash(user.id, user.passwordTs, await hashPassword(staticHash(password)));
    return this.tokens.sign(user.username, user.passwordTs);
  }

  /**
   * `POST /api/auth/login/hash`: AList's login with the password's static hash (hex sha256 of
   * `<password>-https://github.com/alist-org/alist`, see `staticHash`), as the OpenList web UI and
   * the SDKs send it. Returns a token; E_BAD_REQUEST with `login`'s one message for every failure.
   * `otpCode` is accepted and ignored: ferry has no two-factor login, so no user ever needs one.
   */
  async loginHash(username: unknown, hash: unknown, _otpCode?: unknown): Promise<string> {
    if (typeof username !== 'string' || typeof hash !== 'string') {
      throw new FerryError('E_BAD_REQUEST', 'username and password must be strings');
    }
    const user = await this.users.byName(username);
    // Hex is hex in either case; AList's clients send lower case, which is what was hashed.
    const stored = user && user.staticHash !== '' ? user.staticHash : await noUserHashOf();
    const ok = await verifyPassword(hash.toLowerCase(), stored);
    if (!user || user.disabled || user.staticHash === '' || !ok)
      throw new FerryError('E_BAD_REQUEST', LOGIN_FAILED);
    return this.tokens.sign(user.username, user.passwordTs);
  }

  /**
   * `GET /api/auth/logout`: end the session of `token`, which `authenticate` accepted. It is
   * refused from then on by every node of the store (the revocation is in the store, and
   * `authenticate` asks the store on every request). Other sessions of the user stay.
   */
  async logout(token: string): Promise<void> {
    const claims = await this.tokens.verify(token);
    await this.users.revokeToken(claims.id, claims.expiresAt);
    this.tokens.forget(token);
  }

  /** A token for `user` (tests and tools; a login is the way in for people). */
  issueToken(user: User): Promise<string> {
    return this.tokens.sign(user.username, user.passwordTs);
  }

  /**
   * Who a request is. With no token, the built-in guest when it is enabled, else E_UNAUTHORIZED.
   * An invalid, expired or logged-out token, a changed password, a renamed, deleted or disabled
   * user: E_UNAUTHORIZED. The user and the token's revocation are looked up in one query on every
   * call, so none of these waits for a cache on any node.
   */
  async authenticate(token: string | undefined): Promise<Principal> {
    if (!token) {
      const guest = await this.users.byName(GUEST_USERNAME);
      if (!guest || guest.disabled)
        throw new FerryError('E_UNAUTHORIZED', 'Guest user is disabled, login please');
      return toPrincipal(guest);
    }
    const claims = await this.tokens.verify(token);
    const found = await this.users.forToken(claims.username, claims.id);
    if (!found || found.revoked || found.user.passwordTs !== claims.pwdTs)
      throw new FerryError('E_UNAUTHORIZED', 'token is invalidated');
    if (found.user.disabled) throw new FerryError('E_UNAUTHORIZED', 'current user is disabled');
    return toPrincipal(found.user);
  }

  /** A user's id by name, or null (for list filters). */
  async userIdByName(username: string): Promise<number | null> {
    return (await this.users.byName(username))?.id ?? null;
  }

  /** E_NOT_FOUND for an unknown id. */
  async getUser(id: number): Promise<User> {
    const user = await this.users.byId(id);
    if (!user) throw new FerryError('E_NOT_FOUND', 'user not found');
    return user;
  }

  /** Users by id, a page of them when `perPage` is given (pages count from 1). */
  listUsers(page?: { page: number; perPage: number }): Promise<User[]> {
    return this.users.list(page && { limit: page.perPage, offset: (page.page - 1) * page.perPage });
  }

  countUsers(): Promise<number> {
    return this.users.count();
  }

  async createUser(input: UserInput): Promise<User> {
    const username = requireString(input.username, 'username');
    const password = requireString(input.password, 'password');
    const exists = () => new FerryError('E_EXISTS', `user ${username} already exists`);
    if (await this.users.byName(username)) throw exists();
    const user = await this.users.insert({
      username,
      ...(await passwordHashes(password)),
      passwordTs: Date.now(),
      basePath: input.base_path === undefined ? '/' : normalizePath(input.base_path),
      role: optionalRole(input.role) ?? ROLE.GENERAL,
      permission: optionalInt(input.permission, 'permission') ?? 0,
      disabled: input.disabled === true,
    });
    if (!user) throw exists(); // created meanwhile, by a request racing this one
    return user;
  }

  /**
   * Update a user. A non-empty `password` changes it (and ends its sessions); an empty or absent
   * one leaves it as it is, as AList's user form sends the whole user with `password: ""`. Fields
   * AList has and ferry does not (`sso_id`, `allow_ldap`, `otp`) are ignored. The built-in admin
   * cannot be disabled, demoted or renamed, nor the guest renamed or given another role: ferry
   * finds them by name (the first start creates a missing `admin`, a request without a token
   * acts as `guest`).
   */
  async updateUser(id: unknown, input: UserInput): Promise<User> {
    const userId = optionalInt(id, 'id');
    const existing = userId === undefined ? null : await this.users.byId(userId);
    if (!existing) throw new FerryError('E_BAD_REQUEST', 'user not found');
    const password = typeof input.password === 'string' && input.password !== '' ? input.password : undefined;
    const username = input.username === undefined ? undefined : requireString(input.username, 'username');
    if (username && username !== existing.username && (await this.users.byName(username))) {
      throw new FerryError('E_EXISTS', `user ${username} already exists`);
    }
    const role = optionalRole(input.role);
    const renamed = username !== undefined && username !== existing.username;
    if (
      existing.username === ADMIN_USERNAME &&
      (input.disabled === true || (role !== undefined && role !== ROLE.ADMIN) || renamed)
    ) {
      throw new FerryError('E_FORBIDDEN', 'the admin user cannot be disabled, demoted or renamed');
    }
    if (existing.username === GUEST_USERNAME && ((role !== undefined && role !== ROLE.GUEST) || renamed)) {
      throw new FerryError('E_FORBIDDEN', 'the guest user cannot be renamed or given another role');
    }
    const patch: Partial<NewUser> = {
      ...(username !== undefined && { username }),
      ...(password !== undefined && { ...(await passwordHashes(password)), passwordTs: Date.now() }),
      ...(input.base_path !== undefined && { basePath: normalizePath(input.base_path) }),
      ...(role !== undefined && { role }),
      ...(input.permission !== undefined && { permission: optionalInt(input.permission, 'permission') }),
      ...(input.disabled !== undefined && { disabled: input.disabled === true }),
    };
    const updated = await this.users.update(existing.id, patch);
    if (!updated) throw new FerryError('E_BAD_REQUEST', 'user not found');
    return updated;
  }

  /**
   * `POST /api/me/update`: the caller changes its own username and password (AList's form sends
   * `{username, password, sso_id}`; an empty password leaves it as it is). `username` is required,
   * as AList requires it. Either change ends the caller's sessions, as a password change always
   * does: the web UI logs in again. Guests may not; the built-in admin keeps its name (see
   * `updateUser`).
   */
  async updateMe(principal: Principal, input: UserInput): Promise<User> {
    if (isGuest(principal)) throw new FerryError('E_FORBIDDEN', 'Guest user can not update profile');
    const username = requireString(input.username, 'username');
    return this.updateUser(principal.id, { username, password: input.password });
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
    await this.users.update(user.id, { ...(await passwordHashes(password)), passwordTs: Date.now() });
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
