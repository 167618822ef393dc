import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import SQLite from 'better-sqlite3';
import { SignJWT } from 'jose';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/core.ts';
import { testDatabases } from './helpers/databases.ts';
import { ADMIN_PASSWORD, type Harness, startHarness } from './helpers/harness.ts';

/**
 * Logins, logouts and profiles as today's AList clients use them: the OpenList web UI (hashed
 * login, logout, the profile page) and the Python SDKs (alist-sdk's `Me` model, alist3's hashed
 * login). Users as the admin manages them: `alist-users.test.ts`.
 */

/** AList's static hash, as its clients compute it (spelled out here, not taken from src). */
const hashOf = (password: string) =>
  createHash('sha256').update(`${password}-https://github.com/alist-org/alist`).digest('hex');

/** The one answer to every failed login. */
const LOGIN_FAILED = { code: 400, message: 'password is incorrect or user does not exist', data: null };

interface UserView {
  id: number;
  username: string;
  password: string;
  base_path: string;
  role: number;
  disabled: boolean;
  permission: number;
  sso_id: string;
  allow_ldap: boolean;
  otp: boolean;
}

describe('AList auth', () => {
  let h: Harness;
  /** The SQLite file under the harness, for what no API shows (a password set before migration 3). */
  let db: SQLite.Database;
  const loginHash = (username: string, password: string, extra: Record<string, unknown> = {}) =>
    h.json<{ token: string }>('POST', '/api/auth/login/hash', { body: { username, password, ...extra } });
  const me = (token: string | null) => h.json<UserView>('GET', '/api/me', { token });
  const idOf = async (username: string) => {
    const list = await h.json<{ content: UserView[] }>('GET', '/api/admin/user/list', {
      token: h.adminToken,
    });
    return list.data.content.find((u) => u.username === username)?.id as number;
  };

  before(async () => {
    h = await startHarness();
    db = new SQLite(join(h.dataDir, 'ferry.db'));
  });
  after(async () => {
    db?.close();
    await h?.close();
  });

  it('logs in with the static hash, as the web UI and the SDKs do, with one answer for every failure', async () => {
    const res = await loginHash('admin', hashOf(ADMIN_PASSWORD), { otp_code: '' });
    assert.equal(res.code, 200, res.message);
    assert.equal((await me(res.data.token)).data.username, 'admin');
    // alist3 sends `otp_code: null`; hex in upper case is the same hash.
    assert.equal((await loginHash('admin', hashOf(ADMIN_PASSWORD), { otp_code: null })).code, 200);
    assert.equal((await loginHash('admin', hashOf(ADMIN_PASSWORD).toUpperCase())).code, 200);

    await h.user('hana');
    assert.equal((await loginHash('hana', hashOf('hana-pw'))).code, 200, 'a user created through the API');
    const failures = [
      await loginHash('admin', hashOf('wrong')),
      await loginHash('admin', ADMIN_PASSWORD), // the password itself is not its hash
      await loginHash('nobody', hashOf(ADMIN_PASSWORD)),
      await loginHash('guest', hashOf('')),
      await loginHash('admin', ''),
    ];
    await h.json('POST', '/api/admin/user/update', {
      token: h.adminToken,
      body: { id: await idOf('hana'), disabled: true },
    });
    failures.push(await loginHash('hana', hashOf('hana-pw')));
    for (const failure of failures) assert.deepEqual(failure, LOGIN_FAILED);
    // The plain login says the same.
    assert.deepEqual(
      await h.json('POST', '/api/auth/login', { body: { username: 'nobody', password: 'x' } }),
      LOGIN_FAILED,
    );
    assert.equal((await loginHash('admin', 42 as unknown as string)).code, 400);
  });

  it('learns the static hash of a password set before it kept one at the next plain login', async () => {
    await h.user('old');
    // As migration 3 leaves a user whose password was set before it.
    db.prepare("UPDATE users SET static_hash = '' WHERE username = 'old'").run();
    assert.deepEqual(await loginHash('old', hashOf('old-pw')), LOGIN_FAILED);
    assert.deepEqual(await loginHash('old', hashOf('')), LOGIN_FAILED);
    await h.login('old', 'old-pw');
    assert.equal((await loginHash('old', hashOf('old-pw'))).code, 200);
    assert.deepEqual(await loginHash('old', hashOf('other')), LOGIN_FAILED);
  });

  it('keeps the hashed login in step with every password change, and a wrong plain login learns nothing', async () => {
    const token = await h.user('pat');
    const id = await idOf('pat');
    // By the admin.
    await h.json('POST', '/api/admin/user/update', { token: h.adminToken, body: { id, password: 'pat-2' } });
    assert.deepEqual(await loginHash('pat', hashOf('pat-pw')), LOGIN_FAILED);
    assert.equal((await loginHash('pat', hashOf('pat-2'))).code, 200);
    assert.equal((await me(token)).code, 401, 'the old session ended');
    // By the user itself.
    const token2 = await h.login('pat', 'pat-2');
    const upd = await h.json('POST', '/api/me/update', {
      token: token2,
      body: { username: 'pat', password: 'pat-3', sso_id: '' },
    });
    assert.deepEqual(upd, { code: 200, message: 'success', data: null });
    assert.equal((await me(token2)).code, 401, 'a password change ends the sessions, as AList');
    assert.deepEqual(await loginHash('pat', hashOf('pat-2')), LOGIN_FAILED);
    assert.equal((await loginHash('pat', hashOf('pat-3'))).code, 200);
    await h.login('pat', 'pat-3');
    // A wrong plain password never becomes the static hash of a user who has none.
    db.prepare("UPDATE users SET static_hash = '' WHERE username = 'pat'").run();
    await assert.rejects(h.login('pat', 'not-pat'));
    assert.deepEqual(await loginHash('pat', hashOf('not-pat')), LOGIN_FAILED);
  });

  it('answers /api/me with the fields of AList and its SDKs', async () => {
    const token = await h.user('mia', { base_path: '/local/mia', permission: 0x48 });
    const res = await me(token);
    assert.deepEqual(res, {
      code: 200,
      message: 'success',
      data: {
        id: await idOf('mia'),
        username: 'mia',
        password: '',
        base_path: '/local/mia',
        role: 0,
        disabled: false,
        permission: 0x48,
        sso_id: '',
        allow_ldap: false,
        otp: false,
      },
    });
    assert.equal((await me(null)).code, 401, 'no token, guest disabled');
  });

  it('logs out exactly the token it is called with', async () => {
    const first = await h.user('leo');
    const second = await h.login('leo', 'leo-pw');
    const out = await h.json('GET', '/api/auth/logout', { token: first });
    assert.deepEqual(out, { code: 200, message: 'success', data: null });
    assert.deepEqual(await me(first), { code: 401, message: 'token is invalidated', data: null });
    assert.equal((await h.json('GET', '/api/task/copy/done', { token: first })).code, 401);
    assert.equal((await h.json('GET', '/api/auth/logout', { token: first })).code, 401, 'already out');
    assert.equal((await me(second)).data.username, 'leo', 'another session of the same user stays');
    assert.equal((await h.json('GET', '/api/auth/logout', { token: `Bearer ${second}` })).code, 200);
    assert.equal((await me(second)).code, 401);
    assert.equal((await h.json('GET', '/api/auth/logout')).code, 401, 'no token: the disabled guest');
    assert.equal((await h.json('GET', '/api/auth/logout', { token: 'forged.token.here' })).code, 401);
  });

  it('lets a user change its own name and password, and refuses guests and renaming admin', async () => {
    const token = await h.user('ned');
    const update = (t: string | null, body: unknown) => h.json('POST', '/api/me/update', { token: t, body });
    assert.deepEqual(await update(token, { username: 'ned2', password: '', sso_id: '' }), {
      code: 200,
      message: 'success',
      data: null,
    });
    assert.equal((await me(token)).code, 401, 'a renamed user logs in again, as with AList');
    assert.equal((await loginHash('ned2', hashOf('ned-pw'))).code, 200, 'an empty password is unchanged');
    const ned2 = await h.login('ned2', 'ned-pw');
    assert.equal((await update(ned2, { username: 'admin', password: '' })).code, 403, 'name taken');
    assert.equal((await update(ned2, { username: '', password: 'x' })).code, 400);
    assert.equal((await update(ned2, [{ username: 'x' }])).code, 400);
    assert.equal((await update(ned2, { password: 'x' })).code, 400, 'AList requires the username');
    assert.equal((await me(ned2)).code, 200, 'refused updates change nothing');
    const adminRename = await update(h.adminToken, { username: 'root', password: '' });
    assert.equal(adminRename.code, 403);
    assert.equal((await me(h.adminToken)).code, 200);

    const guestId = await idOf('guest');
    await h.json('POST', '/api/admin/user/update', {
      token: h.adminToken,
      body: { id: guestId, disabled: false },
    });
    try {
      assert.equal((await me(null)).data.username, 'guest');
      assert.deepEqual(await update(null, { username: 'intruder', password: 'x' }), {
        code: 403,
        message: 'Guest user can not update profile',
        data: null,
      });
      assert.equal((await h.json('GET', '/api/me/sshkey/list')).code, 401, 'AList refuses a guest here');
    } finally {
      await h.json('POST', '/api/admin/user/update', {
        token: h.adminToken,
        body: { id: guestId, disabled: true },
      });
    }
  });
});

describe('logged-out tokens', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ tokenExpiresHours: 1 / 3600 });
  });
  after(() => h?.close());

  it('are forgotten once they would have expired anyway', async () => {
    const db = new SQLite(join(h.dataDir, 'ferry.db'));
    try {
      const rows = () => (db.prepare('SELECT COUNT(*) AS n FROM revoked_tokens').get() as { n: number }).n;
      const first = await h.login('admin', ADMIN_PASSWORD);
      assert.equal((await h.json('GET', '/api/auth/logout', { token: first })).code, 200);
      assert.equal(rows(), 1);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const second = await h.login('admin', ADMIN_PASSWORD);
      assert.equal((await h.json('GET', '/api/auth/logout', { token: second })).code, 200);
      assert.equal(rows(), 1, 'the first, expired, was pruned by the second logout');
      assert.equal((await h.json('GET', '/api/me', { token: first })).code, 401, 'and it stays refused');
    } finally {
      db.close();
    }
  });
});

describe('a store made before migration 3', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-upgrade-'));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  it('upgrades: passwords stand, hashed logins start at the next plain login, old tokens can log out', async () => {
    const config = await loadConfig({ FERRY_DATA_DIR: dataDir, FERRY_ADMIN_PASSWORD: 'set-long-ago' });
    await (await startCore(config, pino({ level: 'silent' }), { runWorkers: false })).close();
    // Back to what migrations 1 and 2 made (undoing 3 and 4; the later ones touch other tables
    // and stay applied, which the migrator allows), and a token as ferry issued them then (no jti).
    const db = new SQLite(join(dataDir, 'ferry.db'));
    db.exec(`DROP TABLE revoked_tokens;
      ALTER TABLE users DROP COLUMN static_hash;
      ALTER TABLE storages DROP COLUMN options;
      DELETE FROM ferry_migrations WHERE version IN (3, 4);`);
    const { value: secret } = db.prepare("SELECT value FROM meta WHERE key = 'token_secret'").get() as {
      value: string;
    };
    const { password_ts } = db.prepare("SELECT password_ts FROM users WHERE username = 'admin'").get() as {
      password_ts: number;
    };
    db.close();
    const oldToken = await new SignJWT({ username: 'admin', pwd_ts: Number(password_ts) })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(Buffer.from(secret, 'base64url'));

    const core = await startCore(config, pino({ level: 'silent' }), { runWorkers: false });
    const app = await buildApp(core);
    try {
      const call = async (method: 'GET' | 'POST', url: string, token?: string, body?: unknown) =>
        (
          await app.inject({
            method,
            url,
            headers: token ? { authorization: token } : {},
            ...(body !== undefined && { payload: body as Record<string, unknown> }),
          })
        ).json() as { code: number; message: string; data: { token?: string; username?: string } };
      assert.equal((await call('GET', '/api/me', oldToken)).data.username, 'admin', 'the old token works');
      const hashed = { username: 'admin', password: hashOf('set-long-ago') };
      assert.deepEqual(await call('POST', '/api/auth/login/hash', undefined, hashed), LOGIN_FAILED);
      const plain = await call('POST', '/api/auth/login', undefined, {
        username: 'admin',
        password: 'set-long-ago',
      });
      assert.equal(plain.code, 200, 'the password set before the upgrade');
      assert.equal((await call('POST', '/api/auth/login/hash', undefined, hashed)).code, 200);
      assert.equal((await call('GET', '/api/auth/logout', oldToken)).code, 200);
      assert.equal(
        (await call('GET', '/api/me', oldToken)).code,
        401,
        'an old token is logged out by its digest',
      );
      assert.equal((await call('GET', '/api/me', plain.data.token)).code, 200);
    } finally {
      await app.close();
      await core.close();
    }
  });
});

const postgres = (await testDatabases()).find((d) => d.dialect === 'postgres');

describe('logout on two nodes of one PostgreSQL store', {
  skip: postgres ? false : 'PostgreSQL unreachable',
}, () => {
  let a: Harness;
  let b: Harness;
  let drop: () => Promise<void>;
  before(async () => {
    if (!postgres) return;
    const db = await postgres.create();
    drop = db.drop;
    a = await startHarness({ databaseUrl: db.url });
    b = await startHarness({ databaseUrl: db.url });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await drop?.();
  });

  it('refuses a token logged out on one node on the other at once, though that node had just accepted it', async () => {
    const login = await a.json<{ token: string }>('POST', '/api/auth/login/hash', {
      body: { username: 'admin', password: hashOf(ADMIN_PASSWORD), otp_code: '' },
    });
    assert.equal(login.code, 200, login.message);
    const token = login.data.token;
    const other = await b.login('admin', ADMIN_PASSWORD);
    for (const node of [a, b]) assert.equal((await node.json('GET', '/api/me', { token })).code, 200);
    assert.equal((await a.json('GET', '/api/auth/logout', { token })).code, 200);
    for (const node of [b, a])
      assert.deepEqual(await node.json('GET', '/api/me', { token }), {
        code: 401,
        message: 'token is invalidated',
        data: null,
      });
    for (const node of [a, b]) assert.equal((await node.json('GET', '/api/me', { token: other })).code, 200);
    // A password set through one node is the one the other checks, in both logins.
    const mid = await a.user('mid');
    const id = (await a.json<UserView>('GET', '/api/me', { token: mid })).data.id;
    await a.json('POST', '/api/admin/user/update', { token: a.adminToken, body: { id, password: 'mid-2' } });
    const hashed = await b.json('POST', '/api/auth/login/hash', {
      body: { username: 'mid', password: hashOf('mid-2') },
    });
    assert.equal(hashed.code, 200);
    assert.equal((await b.json('GET', '/api/me', { token: mid })).code, 401);
  });
});
