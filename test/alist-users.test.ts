import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from './helpers/harness.ts';

/**
 * Users as the admin manages them through AList's API, in the shapes today's clients read: the
 * OpenList web UI's users page and edit form (which posts the whole user back, `password: ""`
 * meaning unchanged), alist-sdk's `User` model, and the SSH key lists of both.
 */

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

describe('AList users', () => {
  let h: Harness;
  const me = (token: string | null) => h.json<UserView>('GET', '/api/me', { token });
  const idOf = async (username: string) => {
    const list = await h.json<{ content: UserView[] }>('GET', '/api/admin/user/list', {
      token: h.adminToken,
    });
    return list.data.content.find((u) => u.username === username)?.id as number;
  };

  before(async () => {
    h = await startHarness();
  });
  after(() => h?.close());

  it('lists no SSH keys, in AList’s shape', async () => {
    const token = await h.user('sky');
    const empty = { code: 200, message: 'success', data: { content: [], total: 0 } };
    assert.deepEqual(await h.json('GET', '/api/me/sshkey/list', { token }), empty);
    const id = await idOf('sky');
    assert.deepEqual(
      await h.json('GET', `/api/admin/user/sshkey/list?uid=${id}`, { token: h.adminToken }),
      empty,
    );
    assert.equal(
      (await h.json('GET', '/api/admin/user/sshkey/list?uid=99999', { token: h.adminToken })).code,
      404,
    );
    assert.equal(
      (await h.json('GET', '/api/admin/user/sshkey/list?uid=x', { token: h.adminToken })).code,
      400,
    );
    assert.equal((await h.json('GET', `/api/admin/user/sshkey/list?uid=${id}`, { token })).code, 403);
    const add = await h.json('POST', '/api/me/sshkey/add', {
      token,
      body: { title: 'k', key: 'ssh-ed25519 AAAA' },
    });
    assert.equal(add.code, 400);
    assert.match(add.message, /no SFTP server/);
  });

  it('gets a user for the edit form, and saving the whole form back changes only what was edited', async () => {
    await h.user('eve', { base_path: '/local/eve' });
    const id = await idOf('eve');
    const got = await h.json<UserView>('GET', `/api/admin/user/get?id=${id}`, { token: h.adminToken });
    assert.deepEqual(got.data, {
      id,
      username: 'eve',
      password: '',
      base_path: '/local/eve',
      role: 0,
      disabled: false,
      permission: 0xfc,
      sso_id: '',
      allow_ldap: false,
      otp: false,
    });
    // What the web UI's form posts: the user as it got it, with the edited fields.
    const saved = await h.json<UserView>('POST', '/api/admin/user/update', {
      token: h.adminToken,
      body: { ...got.data, base_path: '/local/eve2', permission: 0x8 },
    });
    assert.equal(saved.code, 200, saved.message);
    const again = await h.json<UserView>('GET', `/api/admin/user/get?id=${id}`, { token: h.adminToken });
    assert.deepEqual([again.data.base_path, again.data.permission], ['/local/eve2', 0x8]);
    assert.ok(await h.login('eve', 'eve-pw'), 'password: "" left the password as it was');

    assert.deepEqual(await h.json('GET', '/api/admin/user/get?id=99999', { token: h.adminToken }), {
      code: 404,
      message: 'user not found',
      data: null,
    });
    for (const bad of ['x', '', '-1', '1.5', '0'])
      assert.equal((await h.json('GET', `/api/admin/user/get?id=${bad}`, { token: h.adminToken })).code, 400);
    assert.equal((await h.json('GET', '/api/admin/user/get', { token: h.adminToken })).code, 400);
    assert.equal(
      (await h.json('GET', `/api/admin/user/get?id=${id}`, { token: await h.user('nosy') })).code,
      403,
    );

    // The built-in users saved through the same form.
    const form = async (username: string) =>
      (
        await h.json<UserView>('GET', `/api/admin/user/get?id=${await idOf(username)}`, {
          token: h.adminToken,
        })
      ).data;
    const post = (body: unknown) => h.json('POST', '/api/admin/user/update', { token: h.adminToken, body });
    const admin = await form('admin');
    assert.equal((await post(admin)).code, 200, 'the admin saved unchanged');
    assert.equal((await post({ ...admin, disabled: true })).code, 403);
    assert.equal((await post({ ...admin, role: 0 })).code, 403);
    assert.equal((await post({ ...admin, username: 'boss' })).code, 403);
    const guest = await form('guest');
    assert.equal((await post({ ...guest, username: 'visitor' })).code, 403);
    assert.equal((await post({ ...guest, role: 0 })).code, 403);
    assert.equal((await post({ ...guest, base_path: '/local' })).code, 200);
    assert.equal((await form('guest')).base_path, '/local');
    assert.equal((await me(h.adminToken)).code, 200);
  });

  it('answers del_cache for a user that exists, as there is no cache to drop', async () => {
    await h.user('cached');
    const delCache = (query: string, token: string | null = h.adminToken) =>
      h.json('POST', `/api/admin/user/del_cache${query}`, { token });
    assert.deepEqual(await delCache('?username=cached'), { code: 200, message: 'success', data: null });
    assert.deepEqual(await delCache('?username=nobody'), {
      code: 404,
      message: 'user not found',
      data: null,
    });
    assert.equal((await delCache('')).code, 400);
    assert.equal((await delCache('?username=cached', await h.user('meddler'))).code, 403);
    assert.equal((await delCache('?username=cached', null)).code, 401);
  });

  it('says two-factor login is not in ferry, to whoever may ask for it', async () => {
    const token = await h.user('careful');
    for (const action of ['generate', 'verify']) {
      const reply = await h.json('POST', `/api/auth/2fa/${action}`, { token, body: { code: '123456' } });
      assert.deepEqual(reply, { code: 400, message: 'ferry has no two-factor login', data: null });
      assert.equal((await h.json('POST', `/api/auth/2fa/${action}`, { token: null })).code, 401);
    }
  });

  it('lists users with AList’s fields, a page at a time when asked', async () => {
    const list = (query = '') =>
      h.json<{ content: UserView[]; total: number }>('GET', `/api/admin/user/list${query}`, {
        token: h.adminToken,
      });
    const all = await list();
    assert.equal(all.data.total, all.data.content.length);
    assert.ok(all.data.total >= 3);
    for (const u of all.data.content) {
      assert.deepEqual(Object.keys(u).sort(), [
        'allow_ldap',
        'base_path',
        'disabled',
        'id',
        'otp',
        'password',
        'permission',
        'role',
        'sso_id',
        'username',
      ]);
      assert.equal(u.password, '');
    }
    const ids = all.data.content.map((u) => u.id);
    const page2 = await list('?page=2&per_page=2');
    assert.deepEqual(
      page2.data.content.map((u) => u.id),
      ids.slice(2, 4),
    );
    assert.equal(page2.data.total, all.data.total);
    assert.deepEqual(
      (await list('?page=0&per_page=1')).data.content.map((u) => u.id),
      ids.slice(0, 1),
    );
    assert.equal((await list('?per_page=0')).data.content.length, ids.length, 'per_page below 1: all');
    assert.equal((await list('?page=99999999999&per_page=99999999999')).data.content.length, 0);
    assert.equal((await list('?page=x')).code, 400);
    assert.equal((await list('?per_page=1.5')).code, 400);
  });
});
