import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type Browser, type BrowserContext, chromium, type Page, type Response } from 'playwright-core';
import type { Config, DeepPartial } from '../../src/config.ts';
import { type Harness, startHarness } from './harness.ts';
import { requireTools } from './tools.ts';

/** Debian's chromium (`.ci/run` installs it); playwright-core drives it, no browser is downloaded. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Flags for a quiet, headless, throwaway browser: nothing but the page under test goes on the
 * network. playwright gives every launch a fresh temporary profile.
 */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Whether the browser tests can run: under CI=true a missing chromium is an error. */
export function chromiumAvailable(): boolean {
  return requireTools('the web UI browser tests', existsSync(CHROMIUM) ? [] : ['chromium']);
}

/** One reply of ferry's API the page received. */
export interface ApiReply {
  method: string;
  /** Path and query, e.g. `/@openlist/api/fs/list`. */
  url: string;
  status: number;
  /** The envelope's `code` (undefined for a body that is not JSON). */
  code: number | undefined;
  message: string;
}

interface ExpectedFailure {
  path: RegExp;
  code: number;
  seen: number;
}

/**
 * ferry listening on loopback (the real app, `startHarness` + listen on port 0) and a page of a
 * real browser on it. Every response whose path holds `/api/` is recorded with its HTTP status
 * and envelope code; `assertNoUnexpectedFailures` fails on any status or code other than 200
 * that the test did not declare with `expectApiFailure` first.
 */
export interface BrowserSession {
  /** `http://127.0.0.1:<port>`. */
  base: string;
  harness: Harness;
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Every API reply so far, in order of arrival. */
  replies: ApiReply[];
  /**
   * Declare that API calls whose path (without query) matches `path` may fail with `code` (the
   * envelope's code, or the HTTP status when the body has none), e.g. a wrong password on purpose.
   */
  expectApiFailure(path: RegExp | string, code: number): void;
  /** Put `token` where the UI keeps it (`localStorage.token`) before any page of `base` loads. */
  useToken(token: string): Promise<void>;
  /** `page.goto(base + path)`, waiting until the network is idle. */
  open(path: string): Promise<Response | null>;
  /**
   * API replies that failed without being expected (replies still being read are waited for),
   * from the `since`-th reply on (default: all of them).
   */
  unexpectedFailures(since?: number): Promise<ApiReply[]>;
  assertNoUnexpectedFailures(since?: number): Promise<void>;
  /** How many replies there are once those still being read are in. */
  settledReplies(): Promise<number>;
  close(): Promise<void>;
}

/** Start ferry (with `overrides` on the test config) and a browser page on it. */
export async function startBrowserSession(overrides: DeepPartial<Config> = {}): Promise<BrowserSession> {
  const harness = await startHarness(overrides);
  let browser: Browser | undefined;
  try {
    await harness.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = harness.app.server.address() as AddressInfo;
    const base = `http://127.0.0.1:${port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, timeout: 60_000 });
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    const replies: ApiReply[] = [];
    const expected: ExpectedFailure[] = [];
    const pending = new Set<Promise<void>>();
    page.on('response', (response) => {
      const url = new URL(response.url());
      if (url.origin !== base || !url.pathname.includes('/api/')) return;
      const done = (async () => {
        let code: number | undefined;
        let message = '';
        try {
          const body = (await response.json()) as { code?: unknown; message?: unknown };
          if (typeof body.code === 'number') code = body.code;
          if (typeof body.message === 'string') message = body.message;
        } catch {
          // not JSON (or the page went away): judged by its HTTP status alone
        }
        replies.push({
          method: response.request().method(),
          url: url.pathname + url.search,
          status: response.status(),
          code,
          message,
        });
      })();
      pending.add(done);
      void done.finally(() => pending.delete(done));
    });
    const failed = (r: ApiReply) => r.status !== 200 || (r.code !== undefined && r.code !== 200);
    const session: BrowserSession = {
      base,
      harness,
      browser,
      context,
      page,
      replies,
      expectApiFailure(path, code) {
        expected.push({ path: typeof path === 'string' ? new RegExp(path) : path, code, seen: 0 });
      },
      async useToken(token) {
        // Once per tab, so a logout in the test stays a logout.
        await context.addInitScript({
          content: `if (!sessionStorage.getItem('ferry-test-token')) {
            sessionStorage.setItem('ferry-test-token', '1');
            localStorage.setItem('token', ${JSON.stringify(token)});
          }`,
        });
      },
      open: (path) => page.goto(base + path, { waitUntil: 'networkidle' }),
      async unexpectedFailures(since = 0) {
        await Promise.allSettled(pending);
        return replies.slice(since).filter((r) => {
          if (!failed(r)) return false;
          const got = r.status !== 200 ? r.status : r.code;
          const match = expected.find((e) => e.code === got && e.path.test(r.url.split('?')[0] ?? ''));
          if (match) match.seen++;
          return !match;
        });
      },
      async assertNoUnexpectedFailures(since = 0) {
        const unexpected = await session.unexpectedFailures(since);
        if (unexpected.length > 0)
          throw new Error(
            `unexpected API failures:\n${unexpected
              .map((r) => `  ${r.method} ${r.url} → HTTP ${r.status}, code ${r.code}: ${r.message}`)
              .join('\n')}`,
          );
      },
      async settledReplies() {
        await Promise.allSettled(pending);
        return replies.length;
      },
      async close() {
        await Promise.allSettled(pending);
        await browser?.close();
        await harness.close();
      },
    };
    return session;
  } catch (err) {
    await browser?.close();
    await harness.close();
    throw err;
  }
}
