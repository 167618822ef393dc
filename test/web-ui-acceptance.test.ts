import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configure, TextReader, Uint8ArrayWriter, ZipWriter } from '@zip.js/zip.js';
import { type BrowserSession, chromiumAvailable, startBrowserSession } from './helpers/browser.ts';
import { type DownloadOrigin, startDownloadOrigin } from './helpers/download-origin.ts';
import { ADMIN_PASSWORD, waitFor } from './helpers/harness.ts';
import {
  apiReply,
  contextAction,
  dialog,
  entry,
  envelope,
  logInThroughForm,
  pickFolder,
  sentJson,
  setCheckbox,
  step,
  taskRow,
  useTool,
  waitForTaskState,
} from './helpers/web-ui-driver.ts';

configure({ useWebWorkers: false });

/** A task as the UI's API replies carry it. */
interface UiTask {
  id: string;
  name: string;
}

/**
 * The acceptance run of the web UI ferry serves (issue 20): a person in Debian's chromium signs
 * in, browses, makes a folder, uploads (as a stream and as a task), copies through the folder
 * picker, reads the task pages (a success badge, Retry on a failed download, Cancel on a running
 * one, Clear), downloads from a URL with the dialog's defaults, decompresses a zip, opens a
 * Download link with no token, previews a text file, adds a storage through the driver form,
 * edits a user and logs out. Every API reply is recorded; each step fails on a failure it did not
 * provoke, and saves a screenshot of the page when it fails.
 */
describe('the web UI, driven end to end', { skip: !chromiumAvailable(), timeout: 180_000 }, () => {
  let s: BrowserSession;
  let origin: DownloadOrigin;
  let files: string;
  let adminToken: string;
  /**
   * Open a page of the UI. Not `s.open`'s network idle: the UI fetches after load, and each step
   * waits for what it looks at, which is sooner than half a second of silence.
   */
  const go = (path: string) => s.page.goto(s.base + path);
  /** The API as the admin, behind the UI's back: to set things up and to check what it did. */
  const asAdmin = <T>(method: 'GET' | 'POST', url: string, body?: unknown) =>
    s.harness.json<T>(method, url, { token: s.harness.adminToken, body });

  before(async () => {
    [s, origin] = await Promise.all([startBrowserSession(), startDownloadOrigin()]);
    files = join(s.harness.dataDir, 'files');
    await mkdir(join(files, 'docs'));
    await writeFile(join(files, 'docs', 'readme.txt'), 'read me first');
    await mkdir(join(s.harness.dataDir, 'second-disk'));
    await writeFile(join(s.harness.dataDir, 'second-disk', 'welcome.txt'), 'from the second disk');
    // WRITE | RENAME: the edit form must show exactly these ticked.
    const mia = {
      username: 'mia',
      password: 'mia-password',
      role: 0,
      base_path: '/local/docs',
      permission: 0x18,
    };
    const created = await asAdmin('POST', '/api/admin/user/create', mia);
    assert.equal(created.code, 200, created.message);
  });
  after(async () => {
    await Promise.all([s?.close(), origin?.close()]);
  });

  it('loads and signs in through the login form', () =>
    step(s, 'login', async () => {
      s.expectApiFailure('/@openlist/api/me', 401); // a visitor, before signing in and after logout
      await go('/');
      await s.page.waitForURL(/\/@login/);
      const login = apiReply(s.page, '/auth/login/hash');
      await logInThroughForm(s.page, 'admin', ADMIN_PASSWORD);
      const reply = await login;
      // The UI sends the password hashed, never as typed.
      assert.notEqual(sentJson(reply.request()).password, ADMIN_PASSWORD);
      adminToken = (await envelope<{ token: string }>(reply)).data.token;
      assert.ok(adminToken);
      await entry(s.page, 'local').waitFor();
    }));

  it('browses into folders and makes one', () =>
    step(s, 'browse-mkdir', async () => {
      await entry(s.page, 'local').click();
      await entry(s.page, 'docs').click();
      await entry(s.page, 'readme.txt').waitFor();
      await s.page.getByRole('link', { name: 'local', exact: true }).click();
      await entry(s.page, 'docs').waitFor();
      await useTool(s.page, 'mkdir');
      await dialog(s.page).locator('#modal-input').fill('inbox');
      const made = apiReply(s.page, '/fs/mkdir');
      await dialog(s.page).getByRole('button', { name: 'OK' }).click();
      assert.equal((await envelope(await made)).code, 200);
      await entry(s.page, 'inbox').waitFor();
      assert.ok(existsSync(join(files, 'inbox')));
    }));

  it('uploads a file as a stream, and one as a task the upload page shows succeeded', () =>
    step(s, 'upload', async () => {
      await useTool(s.page, 'upload');
      const upload = dialog(s.page);
      assert.equal(await upload.getByRole('combobox').textContent(), 'Stream');
      const files_ = upload.locator('input[type="file"]:not([webkitdirectory])');
      let put = apiReply(s.page, '/fs/put');
      await files_.setInputFiles({
        name: 'notes.txt',
        mimeType: 'text/plain',
        buffer: Buffer.from('ferry notes\n'),
      });
      assert.equal((await envelope(await put)).code, 200);
      await upload.getByText('Success').waitFor();

      await upload.getByRole('button', { name: 'Back to Upload' }).click();
      await setCheckbox(upload, 'Add as task', true);
      put = apiReply(s.page, '/fs/put');
      await files_.setInputFiles({
        name: 'report.bin',
        mimeType: 'application/octet-stream',
        buffer: Buffer.alloc(300_000, 7),
      });
      const asTask = await put;
      assert.equal(asTask.request().headers()['as-task'], 'true');
      const { task } = (await envelope<{ task: UiTask }>(asTask)).data;
      await upload.getByRole('button', { name: 'Close modal' }).click();
      await s.harness.finished('upload', task.id);

      await go('/@manage/tasks/upload');
      await waitForTaskState(s.page, 'report.bin', 'Succeeded');
      assert.equal(await readFile(join(files, 'notes.txt'), 'utf8'), 'ferry notes\n');
      assert.equal((await readFile(join(files, 'report.bin'))).length, 300_000);
    }));

  it('copies a file into a folder chosen in the folder picker', () =>
    step(s, 'copy', async () => {
      await go('/local');
      await contextAction(s.page, 'notes.txt', 'Copy');
      await pickFolder(dialog(s.page), '/local/inbox');
      const copy = apiReply(s.page, '/fs/copy');
      await dialog(s.page).getByRole('button', { name: 'OK' }).click();
      const reply = await copy;
      assert.deepEqual(sentJson(reply.request()), {
        src_dir: '/local',
        dst_dir: '/local/inbox',
        names: ['notes.txt'],
        overwrite: false,
        skip_existing: false,
        merge: false,
      });
      const [task] = (await envelope<{ tasks: UiTask[] }>(reply)).data.tasks;
      await s.harness.finished('copy', task!.id);
      await go('/@manage/tasks/copy');
      await waitForTaskState(s.page, 'notes.txt', 'Succeeded');
      await go('/local/inbox');
      await entry(s.page, 'notes.txt').waitFor();
    }));

  it('previews a text file, and its Download link works in a page with no token', () =>
    step(s, 'preview-download', async () => {
      await go('/local');
      await entry(s.page, 'notes.txt').click();
      await s.page.getByText('ferry notes').waitFor();

      await s.page.getByRole('combobox').first().click();
      await s.page.getByRole('option', { name: 'Direct Download', exact: true }).click();
      const link = s.page.getByRole('button', { name: 'Download', exact: true });
      const href = await link.getAttribute('href');
      assert.match(href ?? '', /\/d\/local\/notes\.txt\?sign=/);
      const fromUi = s.page.waitForEvent('download');
      await link.click();
      assert.equal(await readFile(await (await fromUi).path(), 'utf8'), 'ferry notes\n');

      // A browser that never signed in: no token, no cookie, no storage. The sign is the key.
      const stranger = await s.browser.newContext();
      try {
        const page = await stranger.newPage();
        const download = page.waitForEvent('download');
        await page.goto(href!).catch(() => {}); // "Download is starting": the page itself aborts
        assert.equal(await readFile(await (await download).path(), 'utf8'), 'ferry notes\n');
        const forged = await stranger.request.get(href!.replace(/sign=[^&]*/, 'sign=forged:0'));
        assert.equal(forged.status(), 401);
      } finally {
        await stranger.close();
      }
    }));

  it('shows an uploaded zip and decompresses it into a new folder', () =>
    step(s, 'decompress', async () => {
      const zip = new ZipWriter(new Uint8ArrayWriter());
      await zip.add('pack/alpha.txt', new TextReader('alpha'));
      await zip.add('pack/sub/beta.txt', new TextReader('beta'));
      const bytes = Buffer.from(await zip.close());
      await go('/local');
      await useTool(s.page, 'upload');
      const put = apiReply(s.page, '/fs/put');
      await dialog(s.page)
        .locator('input[type="file"]:not([webkitdirectory])')
        .setInputFiles({ name: 'bundle.zip', mimeType: 'application/zip', buffer: bytes });
      assert.equal((await envelope(await put)).code, 200);
      await dialog(s.page).getByRole('button', { name: 'Close modal' }).click();

      // Its page lists the archive's inside (archive/meta), folders open in place.
      const meta = apiReply(s.page, '/fs/archive/meta');
      await entry(s.page, 'bundle.zip').click();
      assert.equal((await envelope(await meta)).code, 200);
      await entry(s.page, 'pack').click();
      await entry(s.page, 'alpha.txt').waitFor();
      await entry(s.page, 'sub').waitFor();

      await go('/local');
      await contextAction(s.page, 'bundle.zip', 'Decompress');
      await setCheckbox(dialog(s.page), 'Decompress into a new sub-folder', true);
      await pickFolder(dialog(s.page), '/local');
      const decompress = apiReply(s.page, '/fs/archive/decompress');
      await dialog(s.page).getByRole('button', { name: 'OK' }).click();
      const reply = await decompress;
      assert.equal(sentJson(reply.request()).put_into_new_dir, true);
      const [task] = (await envelope<{ tasks: UiTask[] }>(reply)).data.tasks;
      await s.harness.finished('decompress', task!.id);
      await go('/@manage/tasks/decompress');
      await waitForTaskState(s.page, 'bundle.zip', 'Succeeded');
      await go('/local/bundle/pack/sub');
      await entry(s.page, 'beta.txt').waitFor();
      assert.equal(await readFile(join(files, 'bundle', 'pack', 'alpha.txt'), 'utf8'), 'alpha');
    }));

  it('offline downloads: Retry brings a failed one back, Cancel stops a running one, Clear empties the list', () =>
    step(s, 'offline-retry-cancel-clear', async () => {
      const flaky = `${origin.base}/flaky.bin`;
      const slow = `${origin.base}/slow.bin`;
      await go('/local');
      await useTool(s.page, 'offline_download');
      const form = dialog(s.page);
      await form.locator('textarea').fill(`${flaky}\n${slow}`);
      // Downloaded first, then moved into the folder (a transfer task): not the dialog's default.
      await form.getByRole('combobox').nth(1).click();
      await s.page.getByRole('option', { name: 'Delete on upload succeed', exact: true }).click();
      const add = apiReply(s.page, '/fs/add_offline_download');
      await form.getByRole('button', { name: 'Start Download' }).click();
      const reply = await add;
      assert.equal(sentJson(reply.request()).delete_policy, 'delete_on_upload_succeed');
      const [flakyTask, slowTask] = (await envelope<{ tasks: UiTask[] }>(reply)).data.tasks;
      assert.equal((await s.harness.finished('offline_download', flakyTask!.id)).state, 'failed');

      await go('/@manage/tasks/offline_download');
      await waitForTaskState(s.page, flaky, 'Failed');
      origin.flakyFixed = true;
      const retry = apiReply(s.page, '/task/offline_download/retry');
      await taskRow(s.page, flaky).getByRole('button', { name: 'Retry', exact: true }).click();
      assert.equal((await envelope(await retry)).code, 200);
      await waitFor(async () => existsSync(join(files, 'flaky.bin')) || undefined, 20_000, 'flaky.bin');
      assert.equal(await readFile(join(files, 'flaky.bin'), 'utf8'), 'fixed on the second try');

      await waitForTaskState(s.page, slow, 'Running');
      const cancel = apiReply(s.page, '/task/offline_download/cancel');
      await taskRow(s.page, slow).getByRole('button', { name: 'Cancel', exact: true }).click();
      assert.equal((await envelope(await cancel)).code, 200);
      assert.equal((await s.harness.finished('offline_download', slowTask!.id)).state, 'canceled');
      assert.ok(!existsSync(join(files, 'slow.bin')), 'a canceled download leaves no file');

      // The page holds two lists, downloads then transfers: the buttons of the first are the downloads'.
      await s.page.getByRole('button', { name: 'Refresh', exact: true }).first().click();
      await waitForTaskState(s.page, flaky, 'Succeeded');
      await waitForTaskState(s.page, slow, 'Canceled');
      const clear = apiReply(s.page, '/task/offline_download/clear_done');
      await s.page.getByRole('button', { name: 'Clear', exact: true }).first().click();
      assert.equal((await envelope(await clear)).code, 200);
      await taskRow(s.page, flaky).waitFor({ state: 'detached' });
      await taskRow(s.page, slow).waitFor({ state: 'detached' });
      const done = await asAdmin<unknown[]>('GET', '/api/task/offline_download/done');
      assert.deepEqual(done.data, []);
    }));

  it("offline downloads with the dialog's default policy, streamed into the folder", () =>
    step(s, 'offline-default-policy', async () => {
      const url = `${origin.base}/streamed.txt`;
      await go('/local/inbox');
      await useTool(s.page, 'offline_download');
      await dialog(s.page).locator('textarea').fill(url);
      const add = apiReply(s.page, '/fs/add_offline_download');
      await dialog(s.page).getByRole('button', { name: 'Start Download' }).click();
      const reply = await add;
      const sent = sentJson(reply.request());
      assert.equal(sent.tool, 'SimpleHttp');
      assert.equal(sent.delete_policy, 'upload_download_stream');
      assert.equal(sent.path, '/local/inbox');
      const body = await envelope<{ tasks: UiTask[] }>(reply);
      assert.equal(body.code, 200, body.message);
      assert.equal((await s.harness.finished('offline_download', body.data.tasks[0]!.id)).state, 'succeeded');
      await go('/@manage/tasks/offline_download');
      await waitForTaskState(s.page, url, 'Succeeded');
      await go('/local/inbox');
      await entry(s.page, 'streamed.txt').waitFor();
      // Streamed: no copy in the data dir was made, so no transfer task moved one.
      for (const list of ['done', 'undone']) {
        const transfers = await asAdmin<UiTask[]>('GET', `/api/task/offline_download_transfer/${list}`);
        assert.ok(!transfers.data.some((t) => t.name.includes('streamed.txt')), transfers.message);
      }
      assert.equal(
        await readFile(join(files, 'inbox', 'streamed.txt'), 'utf8'),
        'streamed straight into the folder',
      );
    }));

  it('adds a Local storage through the driver form and browses it', () =>
    step(s, 'add-storage', async () => {
      await go('/@manage/storages');
      await s.page.getByRole('button', { name: 'Add', exact: true }).click();
      await s.page.getByRole('combobox').click();
      await s.page.getByRole('option', { name: 'Local', exact: true }).click();
      await s.page.locator('#mount_path').fill('/second');
      await s.page.locator('#root_folder_path').fill(join(s.harness.dataDir, 'second-disk'));
      const create = apiReply(s.page, '/admin/storage/create');
      await s.page.getByRole('button', { name: 'Add', exact: true }).click();
      const reply = await create;
      assert.equal((await envelope(reply)).code, 200);
      assert.equal(sentJson(reply.request()).driver, 'Local');
      await s.page.waitForURL(/\/@manage\/storages$/);
      await s.page.getByText('/second', { exact: true }).waitFor();
      await go('/second');
      await entry(s.page, 'welcome.txt').click();
      await s.page.getByText('from the second disk').waitFor();
    }));

  it("edits a user: the form shows the user's values, and saves the changes", () =>
    step(s, 'edit-user', async () => {
      await go('/@manage/users');
      await s.page
        .getByRole('row', { name: /\bmia\b/ })
        .getByRole('button', { name: 'Edit' })
        .click();
      await s.page.waitForURL(/\/@manage\/users\/edit\/\d+$/);
      const form = s.page.locator('#root');
      assert.equal(await s.page.locator('#username').inputValue(), 'mia');
      assert.equal(await s.page.locator('#base_path').inputValue(), '/local/docs');
      assert.equal(await s.page.locator('#password').inputValue(), '');
      assert.equal(await form.getByLabel('Write content (Create / Upload / Modify)').isChecked(), true);
      assert.equal(await form.getByLabel('Rename', { exact: true }).isChecked(), true);
      assert.equal(await form.getByLabel('Copy', { exact: true }).isChecked(), false);

      await s.page.locator('#base_path').click();
      await pickFolder(dialog(s.page), '/local/inbox');
      await dialog(s.page).getByRole('button', { name: 'Confirm' }).click();
      assert.equal(await s.page.locator('#base_path').inputValue(), '/local/inbox');
      await setCheckbox(form, 'Copy', true);
      const update = apiReply(s.page, '/admin/user/update');
      await s.page.getByRole('button', { name: 'Save', exact: true }).click();
      assert.equal((await envelope(await update)).code, 200);

      type Users = { content: { username: string; base_path: string; permission: number }[] };
      const users = await asAdmin<Users>('GET', '/api/admin/user/list');
      const mia = users.data.content.find((u) => u.username === 'mia');
      assert.deepEqual(
        { base_path: mia?.base_path, permission: mia?.permission },
        { base_path: '/local/inbox', permission: 0x58 },
      );
      // The password field was left blank: the password is kept, not emptied.
      await s.harness.login('mia', 'mia-password');
    }));

  it('the profile page: Enable 2FA says ferry has no two-factor login', () =>
    step(s, 'profile-2fa', async () => {
      s.expectApiFailure('/@openlist/api/auth/2fa/generate', 400);
      await go('/@manage');
      await s.page.getByRole('button', { name: 'Enable 2FA' }).click();
      await s.page.getByText('ferry has no two-factor login').waitFor();
    }));

  it('logs out, and the old token is refused afterwards', () =>
    step(s, 'logout', async () => {
      await go('/@manage');
      const me = await s.harness.json('GET', '/api/me', { token: adminToken });
      assert.equal(me.code, 200);
      const logout = apiReply(s.page, '/auth/logout');
      await s.page.getByRole('button', { name: 'logout' }).click();
      assert.equal((await envelope(await logout)).code, 200);
      await s.page.waitForURL(/\/@login/);
      await s.page.locator('input[name="password"]').waitFor();
      const after_ = await s.harness.json('GET', '/api/me', { token: adminToken });
      assert.equal(after_.code, 401);
    }));
});
