import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Locator, Page, Request, Response } from 'playwright-core';
import type { BrowserSession } from './browser.ts';

/**
 * What a person does in the OpenList web UI, as playwright steps on the page ferry serves. Each
 * helper finds things the way a user does (labels, button names, the texts of a row) or, where the
 * UI gives an icon no name, by the attribute the UI renders for it (`tips="mkdir"`).
 */

/** The temp folder failure screenshots go to (made on the first failure, outside the repo). */
let shotsDir: string | undefined;

/**
 * Run one step of a browser test: `run`, then fail if the page got an API failure the step did not
 * declare. On any failure a full-page screenshot is saved to a temp folder named in the error.
 */
export async function step(s: BrowserSession, name: string, run: () => Promise<void>): Promise<void> {
  const since = await s.settledReplies();
  try {
    await run();
    await s.assertNoUnexpectedFailures(since);
  } catch (err) {
    shotsDir ??= await mkdtemp(join(tmpdir(), 'ferry-ui-shots-'));
    const file = join(shotsDir, `${name.replace(/[^\w-]+/g, '-')}.png`);
    const saved = await s.page.screenshot({ path: file, fullPage: true }).then(
      () => `screenshot: ${file}`,
      (e: unknown) => `no screenshot: ${String(e)}`,
    );
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${message}\n(${saved}; page ${s.page.url()})`, { cause: err });
  }
}

/** Sign in through the login page's form; resolves once the UI has left the login page. */
export async function logInThroughForm(page: Page, username: string, password: string): Promise<void> {
  await page.locator('input[name="username"]').fill(username);
  await page.locator('input[name="password"]').fill(password);
  await page.getByRole('button', { name: 'Login', exact: true }).click();
  await page.waitForURL((url) => !url.pathname.startsWith('/@login'));
}

/**
 * Click one of the folder toolbar's tools (bottom right; opened first when folded). `tips` is the
 * name the UI gives the icon: `mkdir`, `upload`, `offline_download`, `refresh`…
 */
export async function useTool(page: Page, tips: string): Promise<void> {
  const toolbar = page.locator('.left-toolbar');
  const toggle = page.locator('.toolbar-toggle');
  // Open or folded, as the user last left it (the UI remembers): wait for either to render.
  await toolbar.or(toggle).first().waitFor();
  if (await toggle.isVisible()) await toggle.click();
  await toolbar.locator(`[tips="${tips}"]`).click();
}

/** A file or folder row of the folder being shown, by its exact name. */
export function entry(page: Page, name: string): Locator {
  return page.locator('.list-item .name', { hasText: exactText(name) });
}

/** Right-click the entry `name` of the folder shown and choose `action` (`Copy`, `Decompress`…). */
export async function contextAction(page: Page, name: string, action: string): Promise<void> {
  await entry(page, name).click({ button: 'right' });
  await page.locator('.solid-contextmenu__item', { hasText: exactText(action) }).click();
}

/** The dialog on top (the UI shows one at a time). */
export function dialog(page: Page): Locator {
  return page.getByRole('dialog');
}

/**
 * Choose the folder `path` (`/local/inbox`) in a folder picker dialog: open each folder on the way
 * with its arrow unless the picker already did (it opens the current folder's ancestors itself),
 * then click the last one to select it.
 */
export async function pickFolder(picker: Locator, path: string): Promise<void> {
  const names = ['root', ...path.split('/').filter((n) => n !== '')];
  for (const [i, name] of names.entries()) {
    // `.first()`: a folder's own row comes before its subfolders' rows, whatever they are named.
    const label = picker.locator('.folder-tree-box p', { hasText: exactText(name) }).first();
    await label.waitFor();
    if (i === names.length - 1) {
      await label.click();
      return;
    }
    // A folder node is a box holding its row and, while open, the list of its subfolders.
    const node = label.locator('xpath=../..');
    if ((await node.locator('xpath=./*').count()) < 2)
      await label.locator('xpath=preceding-sibling::*[1]').click();
  }
}

/**
 * Check or uncheck the checkbox labelled `label` inside `scope` by clicking its label, as a person
 * does (the UI's checkboxes are hidden inputs drawn by their labels).
 */
export async function setCheckbox(scope: Locator, label: string, checked: boolean): Promise<void> {
  const input = scope.getByLabel(label, { exact: true });
  if ((await input.isChecked()) !== checked)
    await scope.locator('label', { hasText: exactText(label) }).click();
  if ((await input.isChecked()) !== checked) throw new Error(`the checkbox ${label} did not change`);
}

/** A task's row on a task page, by the title the UI shows for it (a file name or a URL). */
export function taskRow(page: Page, title: string): Locator {
  return page.getByRole('heading', { name: title, exact: true }).locator('xpath=../..');
}

/** Wait until the task row `title` shows the state badge `state` (`Succeeded`, `Failed`…). */
export async function waitForTaskState(page: Page, title: string, state: string): Promise<void> {
  await taskRow(page, title)
    .locator('.hope-badge', { hasText: exactText(state) })
    .waitFor();
}

/** The JSON body a request sent. */
export function sentJson(request: Request): Record<string, unknown> {
  return request.postDataJSON() as Record<string, unknown>;
}

/** The AList envelope of an API response. */
export async function envelope<T>(response: Response): Promise<{ code: number; message: string; data: T }> {
  return (await response.json()) as { code: number; message: string; data: T };
}

/** Wait for the page's reply to the API call whose path ends with `path` (`/fs/copy`). */
export function apiReply(page: Page, path: string): Promise<Response> {
  return page.waitForResponse((r) => new URL(r.url()).pathname.endsWith(`/api${path}`));
}

/** A regular expression matching `text` exactly (as a whole, trimmed). */
function exactText(text: string): RegExp {
  return new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
}
