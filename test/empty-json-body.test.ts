import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from './helpers/harness.ts';

/**
 * A POST with `Content-Type: application/json` and no body, as the alist3 SDK sends for every
 * bodiless call: AList takes it as no body, and so does every dialect of ferry.
 */
describe('an empty JSON body', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h?.close());

  it('takes an empty JSON body as no body in every dialect, and still refuses malformed JSON', async () => {
    const empty = (url: string, token: string | null = h.adminToken, headers: Record<string, string> = {}) =>
      h.call('POST', url, {
        token,
        body: '',
        headers: { 'content-type': 'application/json', ...headers },
      });
    const alist = await empty('/api/task/copy/clear_done');
    assert.deepEqual(alist.json(), { code: 200, message: 'success', data: null });
    const info = await empty('/api/task/copy/info?tid=nope');
    assert.equal(info.json().code, 404);
    const login = await empty('/api/auth/login/hash', null);
    assert.deepEqual(login.json(), {
      code: 400,
      message: 'username and password must be strings',
      data: null,
    });
    const userDelete = await empty('/api/admin/user/delete?id=99999');
    assert.deepEqual(userDelete.json(), { code: 400, message: 'user not found', data: null });
    const current = await empty('/@openlist/api/task/copy/clear_succeeded');
    assert.equal(current.json().code, 200);
    const efile = await empty('/efile/openapi/v2/file/task/list', null, { token: h.adminToken });
    assert.equal(efile.statusCode, 200);
    assert.doesNotMatch(efile.body, /Body cannot be empty|FST_ERR/);
    // Whitespace is no body either; anything else must be JSON.
    assert.equal(
      (
        await h.call('POST', '/api/task/copy/clear_done', {
          token: h.adminToken,
          body: ' \r\n',
          headers: { 'content-type': 'application/json; charset=utf-8' },
        })
      ).json().code,
      200,
    );
    for (const body of ['{', 'nul', '{"__proto__": {"x": 1}}']) {
      const res = await h.call('POST', '/api/task/copy/clear_done', {
        token: h.adminToken,
        body,
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(res.statusCode, 200, body);
      assert.equal(res.json().code, 400, body);
    }
  });
});
