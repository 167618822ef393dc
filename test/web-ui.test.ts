import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserSession, chromiumAvailable, startBrowserSession } from './helpers/browser.ts';

/**
 * The OpenList web UI that ferry serves, driven in Debian's chromium with no stand-ins: it loads,
 * signs in, lists a storage and saves a setting. Every API reply the page gets is recorded, and
 * any failure the test did not provoke fails it (`assertNoUnexpectedFailures`). Later tests of
 * the UI add their steps here, or start their own session the same way.
 */
describe('the web UI in a browser', { skip: !chromiumAvailable(), timeout: 180_000 }, () => {
  let s: BrowserSession;

  before(async () => {
    s = await startBrowserSession();
    await writeFile(join(s.harness.dataDir, 'files', 'hello-ferry.txt'), 'hello from ferry');
  });
  after(async () => {
    await s?.close();
  });

  it('loads without a settings error and sends a visitor to the login page', async () => {
    // Guests are off: the UI asks who it is, hears 401, and shows the login page.
    s.expectApiFailure('/@openlist/api/me', 401);
    await s.open('/');
    await s.page.waitForURL(/\/@login/);
    const text = (await s.page.locator('body').textContent()) ?? '';
    assert.doesNotMatch(text, /Failed fetching settings/);
    const settings = s.replies.filter((r) => r.url === '/@openlist/api/public/settings');
    assert.ok(settings.length > 0, 'the UI asked its settings from /@openlist');
    assert.ok(settings.every((r) => r.status === 200 && r.code === 200));
  });

  it('renders the login page', async () => {
    await s.open('/@login');
    await s.page.locator('input[type="password"]').waitFor();
    assert.equal((await s.page.locator('input').count()) >= 2, true);
    assert.match((await s.page.locator('body').textContent()) ?? '', /Login/);
    assert.match(await s.page.title(), /ferry/);
  });

  it('lists the files of /local to a signed-in admin', async () => {
    await s.useToken(s.harness.adminToken);
    await s.open('/local');
    await s.page.getByText('hello-ferry.txt').waitFor();
    assert.ok(s.replies.some((r) => r.url === '/@openlist/api/fs/list' && r.code === 200));
  });

  it('saves the site title from the settings page, and the site shows it after a reload', async () => {
    await s.open('/@manage/settings/site');
    const title = s.page.locator('#site_title');
    await title.waitFor();
    assert.equal(await title.inputValue(), 'ferry');
    await title.fill('Harbour Master');
    const saved = s.page.waitForResponse((r) => r.url().endsWith('/api/admin/setting/save'));
    await s.page.getByRole('button', { name: 'Save', exact: true }).click();
    assert.equal((await (await saved).json()).code, 200);
    await s.page.getByText('Saved successfully', { exact: false }).waitFor();
    await s.open('/local');
    await s.page.getByText('hello-ferry.txt').waitFor();
    assert.match(await s.page.title(), /Harbour Master/);
    await s.open('/@manage/settings/site');
    assert.equal(await s.page.locator('#site_title').inputValue(), 'Harbour Master');
  });

  it('got no API failure it did not provoke', async () => {
    await s.assertNoUnexpectedFailures();
  });
});
