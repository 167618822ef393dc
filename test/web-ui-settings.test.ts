import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/core.ts';
import { testDatabases } from './helpers/databases.ts';
import { ADMIN_PASSWORD, type Harness, startHarness, waitFor } from './helpers/harness.ts';

/**
 * The settings pages' API (`/api/admin/setting/*`) and the pages ferry has no feature behind:
 * what an admin saves is what every visitor reads back, worker counts reach the runner and agree
 * with `/api/admin/task/workers`, saved values outlive a restart (on each database), and bad or
 * unauthorised saves change nothing.
 */

interface Item {
  key: string;
  value: string;
  type: string;
  group: number;
  flag: number;
  options: string;
}

describe('admin settings', () => {
  let h: Harness;
  let userToken: string;
  const admin = <T>(method: 'GET' | 'POST', url: string, body?: unknown) =>
    h.json<T>(method, url, { token: h.adminToken, ...(body !== undefined && { body }) });

  before(async () => {
    h = await startHarness();
    userToken = await h.user('walter');
  });
  after(async () => {
    await h?.close();
  });

  it('lists each settings page in AList shape, and all of them without a group', async () => {
    const site = await admin<Item[]>('GET', '/api/admin/setting/list?group=1');
    assert.equal(site.code, 200);
    assert.deepEqual(
      site.data.map((i) => i.key),
      ['version', 'site_title', 'announcement', 'pagination_type', 'default_page_size'],
    );
    const version = site.data.find((i) => i.key === 'version');
    assert.equal(version?.flag, 2, 'version is read-only');
    const pagination = site.data.find((i) => i.key === 'pagination_type');
    assert.equal(pagination?.type, 'select');
    assert.match(pagination?.options ?? '', /load_more/);
    const other = await admin<Item[]>('GET', '/api/admin/setting/list?groups=5,0');
    assert.ok(other.data.some((i) => i.key === 'aria2_uri' && i.flag === 2));
    // Pages of features ferry lacks are empty, not errors.
    for (const group of [7, 8, 9, 10]) {
      const empty = await admin<Item[]>('GET', `/api/admin/setting/list?group=${group}`);
      assert.deepEqual([empty.code, empty.data], [200, []], `group ${group}`);
    }
    const all = await admin<Item[]>('GET', '/api/admin/setting/list');
    assert.ok(all.data.length > 30);
  });

  it('gets one setting by key, or several by keys', async () => {
    const one = await admin<Item>('GET', '/api/admin/setting/get?key=site_title');
    assert.equal(one.data.value, 'ferry');
    const two = await admin<Item[]>('GET', '/api/admin/setting/get?keys=site_title,main_color,nope');
    assert.deepEqual(two.data.map((i) => i.key).sort(), ['main_color', 'site_title']);
    const unknown = await admin('GET', '/api/admin/setting/get?key=nope');
    assert.equal(unknown.code, 400);
  });

  it('saves a whole page and gives the values back, to admins and to visitors', async () => {
    const page = (await admin<Item[]>('GET', '/api/admin/setting/list?group=1')).data;
    const edited = page.map((i) =>
      i.key === 'announcement'
        ? { ...i, value: 'Backups run at night' }
        : i.key === 'default_page_size'
          ? { ...i, value: '50' }
          : i,
    );
    const saved = await admin('POST', '/api/admin/setting/save', edited);
    assert.equal(saved.code, 200, saved.message);
    const back = (await admin<Item[]>('GET', '/api/admin/setting/list?group=1')).data;
    assert.equal(back.find((i) => i.key === 'announcement')?.value, 'Backups run at night');
    const pub = await h.json<Record<string, string>>('GET', '/api/public/settings');
    assert.equal(pub.data.announcement, 'Backups run at night');
    assert.equal(pub.data.default_page_size, '50');
    // "Load default" shows the defaults without saving them; delete puts one back.
    const defaults = await admin<Item[]>('POST', '/api/admin/setting/default?group=1');
    assert.equal(defaults.data.find((i) => i.key === 'announcement')?.value, '');
    assert.equal(
      (await h.json<Record<string, string>>('GET', '/api/public/settings')).data.announcement,
      'Backups run at night',
    );
    assert.equal((await admin('POST', '/api/admin/setting/delete?key=announcement')).code, 200);
    assert.equal((await h.json<Record<string, string>>('GET', '/api/public/settings')).data.announcement, '');
  });

  it('refuses bad saves with code 400 and stores nothing of them', async () => {
    const cases: [unknown, RegExp][] = [
      [{ key: 'site_title', value: 'x' }, /array/],
      [5, /array/],
      [[{ value: 'x' }], /key/],
      [[null], /key/],
      [[{ key: 'nope', value: 'x' }], /unknown setting "nope"/],
      [[{ key: 'site_title', value: 5 }], /string/],
      [[{ key: 'audio_autoplay', value: 'yes' }], /"true" or "false"/],
      [[{ key: 'copy_task_threads_num', value: '999' }], /0 to 256/],
      [[{ key: 'copy_task_threads_num', value: '2.5' }], /whole number/],
      [[{ key: 'pagination_type', value: 'endless' }], /one of/],
      [[{ key: 'version', value: 'ferry 99' }], /cannot be changed/],
      [[{ key: 'site_title', value: 'x'.repeat(70_000) }], /at most/],
      // One bad value spoils the whole save: the good one before it is not stored either.
      [
        [
          { key: 'site_title', value: 'Half saved' },
          { key: 'home_container', value: 'wide' },
        ],
        /one of/,
      ],
    ];
    for (const [body, message] of cases) {
      const res = await admin('POST', '/api/admin/setting/save', body);
      assert.equal(res.code, 400, JSON.stringify(body).slice(0, 80));
      assert.match(res.message, message);
    }
    assert.equal(
      (await h.json<Record<string, string>>('GET', '/api/public/settings')).data.site_title,
      'ferry',
    );
    assert.equal((await admin('GET', '/api/admin/setting/list?group=x')).code, 400);
    assert.equal((await admin('POST', '/api/admin/setting/delete')).code, 400);
    // The read-only ones may come back unchanged, as the settings pages send them.
    const version = (await admin<Item>('GET', '/api/admin/setting/get?key=version')).data;
    assert.equal((await admin('POST', '/api/admin/setting/save', [version])).code, 200);
  });

  it('is for admins only: a general user gets 403, no token 401', async () => {
    for (const [method, url, body] of [
      ['GET', '/api/admin/setting/list', undefined],
      ['GET', '/api/admin/setting/get?key=site_title', undefined],
      ['POST', '/api/admin/setting/save', [{ key: 'site_title', value: 'mine' }]],
      ['POST', '/api/admin/setting/default?group=1', undefined],
      ['POST', '/api/admin/setting/delete?key=site_title', undefined],
      ['GET', '/api/admin/meta/list', undefined],
      ['GET', '/api/admin/index/progress', undefined],
    ] as const) {
      const asUser = await h.json(method, url, { token: userToken, ...(body && { body }) });
      assert.equal(asUser.code, 403, `${method} ${url}`);
      const anonymous = await h.json(method, url, { ...(body && { body }) });
      assert.equal(anonymous.code, 401, `${method} ${url}`);
    }
    assert.equal(
      (await h.json<Record<string, string>>('GET', '/api/public/settings')).data.site_title,
      'ferry',
    );
  });

  it('applies worker counts to the runner, in agreement with /api/admin/task/workers', async () => {
    // Saved as a setting: stored and applied; POST /api/admin/task/workers: this node only.
    const traffic = (await admin<Item[]>('GET', '/api/admin/setting/list?group=11')).data;
    assert.equal(
      traffic.find((i) => i.key === 'copy_task_threads_num')?.value,
      String(h.core.config.tasks.workers.copy),
    );
    const saved = await admin('POST', '/api/admin/setting/save', [
      { key: 'copy_task_threads_num', value: '3' },
      { key: 'delete_task_threads_num', value: '1' },
    ]);
    assert.equal(saved.code, 200, saved.message);
    assert.equal(h.core.runner.getLimits().copy, 3);
    const workers = await admin<Record<string, number>>('GET', '/api/admin/task/workers');
    assert.equal(workers.data.copy, 3);
    assert.equal(workers.data.delete, 1);
    const posted = await admin<Record<string, number>>('POST', '/api/admin/task/workers', { upload: 2 });
    assert.equal(posted.data.upload, 2);
    const after = (await admin<Item[]>('GET', '/api/admin/setting/list?group=11')).data;
    assert.equal(after.find((i) => i.key === 'upload_task_threads_num')?.value, '2');
    // Saving the value already stored still sets this node's limit back from its own POST.
    await admin('POST', '/api/admin/task/workers', { copy: 0 });
    assert.equal(
      (await admin<Item>('GET', '/api/admin/setting/get?key=copy_task_threads_num')).data.value,
      '0',
    );
    await admin('POST', '/api/admin/setting/save', [{ key: 'copy_task_threads_num', value: '3' }]);
    assert.equal(h.core.runner.getLimits().copy, 3);
    const bad = await admin('POST', '/api/admin/task/workers', { copy: '4' });
    assert.equal(bad.code, 400);
    assert.equal(h.core.runner.getLimits().copy, 3);
  });

  it('answers the pages of absent features with empty data, and their writes with 400', async () => {
    const shares = await h.json<{ content: unknown[]; total: number }>('GET', '/api/share/list', {
      token: userToken,
    });
    assert.deepEqual([shares.code, shares.data], [200, { content: [], total: 0 }]);
    const metas = await admin<{ content: unknown[]; total: number }>('GET', '/api/admin/meta/list');
    assert.deepEqual([metas.code, metas.data], [200, { content: [], total: 0 }]);
    const index = await admin<{ is_done: boolean; obj_count: number }>('GET', '/api/admin/index/progress');
    assert.deepEqual([index.code, index.data.is_done, index.data.obj_count], [200, true, 0]);
    const keys = await h.json<{ content: unknown[] }>('GET', '/api/me/sshkey/list', { token: userToken });
    assert.deepEqual(keys.data.content, []);
    for (const url of [
      '/api/share/create',
      '/api/admin/meta/create',
      '/api/admin/index/build',
      '/api/admin/setting/set_aria2',
    ])
      assert.equal((await admin('POST', url, {})).code, 400, url);
  });
});

for (const database of await testDatabases()) {
  describe(`settings across restarts and nodes (${database.dialect})`, () => {
    let url: string | undefined;
    let drop: () => Promise<void> = async () => undefined;
    const dirs: string[] = [];

    before(async () => {
      ({ url, drop } = await database.create());
    });
    after(async () => {
      await drop();
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    });

    /** A ferry node on `dataDir` (a new one when absent) and the test database. */
    const node = async (dataDir?: string) => {
      const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'ferry-settings-')));
      if (!dataDir) dirs.push(dir);
      const config = await loadConfig(
        {
          FERRY_DATA_DIR: dir,
          FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
          ...(url && { FERRY_DATABASE_URL: url }),
        },
        { sqliteSynchronous: 'NORMAL', tasks: { pollIntervalMs: 50 } },
      );
      const core = await startCore(config, pino({ level: 'silent' }));
      const app = await buildApp(core);
      const login = await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { username: 'admin', password: ADMIN_PASSWORD },
      });
      const token = (JSON.parse(login.body) as { data: { token: string } }).data.token;
      const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown) =>
        JSON.parse(
          (
            await app.inject({
              method,
              url: path,
              headers: { authorization: token },
              ...(body !== undefined && { payload: body as object }),
            })
          ).body,
        ) as { code: number; data: T };
      return {
        dir,
        core,
        call,
        close: async () => {
          await app.close();
          await core.close();
        },
      };
    };

    it('keeps saved settings and worker counts over a restart', async () => {
      const first = await node();
      const saved = await first.call('POST', '/api/admin/setting/save', [
        { key: 'site_title', value: 'Quay' },
        { key: 'move_task_threads_num', value: '5' },
      ]);
      assert.equal(saved.code, 200);
      // POST /api/admin/task/workers is this node's limit until it restarts, and is not stored.
      await first.call('POST', '/api/admin/task/workers', { move: 1 });
      assert.equal(first.core.runner.getLimits().move, 1);
      await first.close();
      const second = await node(first.dir);
      try {
        assert.equal(second.core.runner.getLimits().move, 5);
        const pub = await second.call<Record<string, string>>('GET', '/api/public/settings');
        assert.equal(pub.data.site_title, 'Quay');
        // Back to the default: forgotten, so a default changed in the config applies again.
        await second.call('POST', '/api/admin/setting/save', [
          { key: 'move_task_threads_num', value: String(second.core.config.tasks.workers.move) },
        ]);
      } finally {
        await second.close();
      }
    });

    if (database.dialect === 'postgres') {
      it('brings a change made through one node to the others', async () => {
        const a = await node();
        const b = await node();
        try {
          await a.call('POST', '/api/admin/setting/save', [
            { key: 'site_title', value: 'Pier' },
            { key: 'decompress_upload_task_threads_num', value: '7' },
          ]);
          await waitFor(
            async () => (b.core.runner.getLimits().decompress_upload === 7 ? true : undefined),
            15_000,
            'node b to take the new worker count',
            100,
          );
          const pub = await b.call<Record<string, string>>('GET', '/api/public/settings');
          assert.equal(pub.data.site_title, 'Pier');
          // A node drained through /api/admin/task/workers stays drained while settings change.
          await b.call('POST', '/api/admin/task/workers', { copy: 0 });
          await a.call('POST', '/api/admin/setting/save', [{ key: 'site_title', value: 'Jetty' }]);
          await waitFor(
            async () =>
              (await b.call<Record<string, string>>('GET', '/api/public/settings')).data.site_title ===
              'Jetty'
                ? true
                : undefined,
            15_000,
            'node b to take the new title',
            100,
          );
          assert.equal(b.core.runner.getLimits().copy, 0);
          assert.equal(a.core.runner.getLimits().copy, a.core.config.tasks.workers.copy);
        } finally {
          await a.close();
          await b.close();
        }
      });
    }
  });
}
