import type { CompiledQuery, Kysely, Selectable } from 'kysely';
import type { Database, UsersTable } from './schema.ts';

export interface User {
  id: number;
  username: string;
  passwordHash: string;
  passwordTs: number;
  /** scrypt of AList's static hash of the password (what `login/hash` checks); '' while unknown. */
  staticHash: string;
  basePath: string;
  role: number;
  permission: number;
  disabled: boolean;
}

export type NewUser = Omit<User, 'id'>;

/** Stands for the token id while `forToken`'s statement is built. */
const TOKEN_ID = '\u0000token-id';

/**
 * Users as stored, and the tokens their logouts ended; password checks, tokens and roles live in
 * `src/auth/`.
 */
export class UserStore {
  /**
   * `forToken`'s statement, built once: only its two parameters change from one request to the
   * next, and building it with Kysely cost more than running it. `tokenAt` is where the token id
   * goes among the parameters.
   */
  private readonly forTokenQuery;

  constructor(private readonly db: Kysely<Database>) {
    const query = db
      .selectFrom('users')
      .leftJoin('revoked_tokens', (join) => join.on('revoked_tokens.token_id', '=', TOKEN_ID))
      .selectAll('users')
      .select('revoked_tokens.token_id as revoked_id')
      .where('users.username', '=', '')
      .compile();
    this.forTokenQuery = { query, tokenAt: query.parameters.indexOf(TOKEN_ID) };
  }

  async byName(username: string): Promise<User | null> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where('username', '=', username)
      .executeTakeFirst();
    return row ? toUser(row) : null;
  }

  async byId(id: number): Promise<User | null> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toUser(row) : null;
  }

  /** Users by id; `limit`/`offset` page through them (AList's `page`/`per_page`). */
  async list(page: { limit?: number; offset?: number } = {}): Promise<User[]> {
    let query = this.db.selectFrom('users').selectAll().orderBy('id');
    if (page.limit !== undefined) query = query.limit(page.limit);
    if (page.offset) query = query.offset(page.offset);
    return (await query.execute()).map(toUser);
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number | string | bigint>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * The user a token names and whether that token was revoked, in one query: every
   * authenticated request makes it, so a logout is refused at once on every node of the store.
   */
  async forToken(username: string, tokenId: string): Promise<{ user: User; revoked: boolean } | null> {
    const { query, tokenAt } = this.forTokenQuery;
    const parameters = tokenAt === 0 ? [tokenId, username] : [username, tokenId];
    const compiled: CompiledQuery<Selectable<UsersTable> & { revoked_id: string | null }> = {
      ...query,
      parameters,
    };
    const [row] = (await this.db.executeQuery(compiled)).rows;
    if (!row) return null;
    const { revoked_id, ...user } = row;
    return { user: toUser(user), revoked: revoked_id !== null };
  }

  /**
   * Record that the token `tokenId` is ended (logout) until `expiresAt` (ms), when it would stop
   * working anyway. Rows past their expiry are pruned here: the table grows only by logouts, so
   * each logout clears what earlier ones left.
   */
  async revokeToken(tokenId: string, expiresAt: number, now = Date.now()): Promise<void> {
    await this.db.deleteFrom('revoked_tokens').where('expires_at', '<', now).execute();
    await this.db
      .insertInto('revoked_tokens')
      .values({ token_id: tokenId, expires_at: expiresAt })
      .onConflict((oc) => oc.column('token_id').doNothing())
      .execute();
  }

  /** Insert a user; null when the username is taken (also by an insert racing this one). */
  async insert(user: NewUser): Promise<User | null> {
    const row = await this.db
      .insertInto('users')
      .values({
        username: user.username,
        password_hash: user.passwordHash,
        password_ts: user.passwordTs,
        static_hash: user.staticHash,
        base_path: user.basePath,
        role: user.role,
        permission: user.permission,
        disabled: user.disabled ? 1 : 0,
        created_at: Date.now(),
      })
      .onConflict((oc) => oc.column('username').doNothing())
      .returningAll()
      .executeTakeFirst();
    return row ? toUser(row) : null;
  }

  async update(id: number, patch: Partial<NewUser>): Promise<User | null> {
    const row = await this.db
      .updateTable('users')
      .set({
        ...(patch.username !== undefined && { username: patch.username }),
        ...(patch.passwordHash !== undefined && { password_hash: patch.passwordHash }),
        ...(patch.passwordTs !== undefined && { password_ts: patch.passwordTs }),
        ...(patch.staticHash !== undefined && { static_hash: patch.staticHash }),
        ...(patch.basePath !== undefined && { base_path: patch.basePath }),
        ...(patch.role !== undefined && { role: patch.role }),
        ...(patch.permission !== undefined && { permission: patch.permission }),
        ...(patch.disabled !== undefined && { disabled: patch.disabled ? 1 : 0 }),
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row ? toUser(row) : null;
  }

  /**
   * Store the slow hash of a user's static hash when it has none yet, unless the password changed
   * meanwhile (`passwordTs` is the timestamp of the password it was made from): a login racing a
   * password change must not bring the old password back for hashed logins.
   */
  async fillStaticHash(id: number, passwordTs: number, staticHash: string): Promise<void> {
    await this.db
      .updateTable('users')
      .set({ static_hash: staticHash })
      .where('id', '=', id)
      .where('password_ts', '=', passwordTs)
      .where('static_hash', '=', '')
      .execute();
  }

  async delete(id: number): Promise<boolean> {
    const r = await this.db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }
}

function toUser(row: Selectable<UsersTable>): User {
  return {
    id: Number(row.id),
    username: row.username,
    passwordHash: row.password_hash,
    passwordTs: Number(row.password_ts),
    staticHash: row.static_hash,
    basePath: row.base_path,
    role: Number(row.role),
    permission: Number(row.permission),
    disabled: row.disabled === 1,
  };
}
