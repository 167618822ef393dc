import type { Kysely, Selectable } from 'kysely';
import type { Database, UsersTable } from './schema.ts';

export interface User {
  id: number;
  username: string;
  passwordHash: string;
  passwordTs: number;
  basePath: string;
  role: number;
  permission: number;
  disabled: boolean;
}

export type NewUser = Omit<User, 'id'>;

/** Users as stored; password checks and roles live in `src/auth/`. */
export class UserStore {
  constructor(private readonly db: Kysely<Database>) {}

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

  async list(): Promise<User[]> {
    return (await this.db.selectFrom('users').selectAll().orderBy('id').execute()).map(toUser);
  }

  /** Insert a user; null when the username is taken (also by an insert racing this one). */
  async insert(user: NewUser): Promise<User | null> {
    const row = await this.db
      .insertInto('users')
      .values({
        username: user.username,
        password_hash: user.passwordHash,
        password_ts: user.passwordTs,
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
    basePath: row.base_path,
    role: Number(row.role),
    permission: Number(row.permission),
    disabled: row.disabled === 1,
  };
}
