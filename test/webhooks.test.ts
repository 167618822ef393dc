import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/**
 * Webhooks through the admin API of a real ferry (inject) and a real receiver on loopback that
 * checks every signature with the shared secret.
 */

interface HookView {
  id: number;
  url: string;
  events: string[];
  kinds: string[];
  enabled: boolean;
  secret: string;
  has_secret: boolean;
}
interface DeliveryRow {
  id: string;
  event: string;
  attempt: number;
  status_code: number | null;
  error: string;
  duration_ms: number | null;
  next_attempt_at: string | null;
  delivered_at: string | null;
  state: string;
}

const SECRET = 'receiver-shared-secret';

describe('webhooks', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      webhooks: { retryBaseDelayMs: 100, retryMaxDelayMs: 400, pollIntervalMs: 50, timeoutMs: 2000 },
    });
  });
  after(async () => {
    await h.close();
  });

  const admin = <T>(method: 'GET' | 'POST', url: string, body?: unknown) =>
    h.json<T>(method, url, { token: h.adminToken, ...(body !== undefined && { body }) });

  const create = async (body: Record<string, unknown>) => {
    const res = await admin<HookView>('POST', '/api/admin/webhook/create', body);
    assert.equal(res.code, 200, res.message);
    return res.data;
  };

  /** A copy of one small file under /local; returns the task id once it has finished. */
  let copies = 0;
  const copyOne = async () => {
    const n = ++copies;
    const src = join(h.dataDir, 'files', `src-${n}`);
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.txt'), `file ${n}`);
    const res = await admin<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
      src_dir: `/local/src-${n}`,
      dst_dir: `/local/dst-${n}`,
      names: ['a.txt'],
    });
    assert.equal(res.code, 200, res.message);
    const id = res.data.tasks[0]?.id;
    assert.ok(id);
    const done = await h.finished('copy', id);
    assert.equal(done.state, 'succeeded', done.error);
    return id;
  };

  it('retries a receiver that answers 500 twice: three signed attempts of one delivery, all in the log', async () => {
    const receiver = await startReceiver(SECRET, (n) => (n <= 2 ? 500 : 200));
    try {
      const hook = await create({ url: receiver.url, secret: SECRET, events: ['task.succeeded'] });
      const taskId = await copyOne();
      await waitFor(async () => (receiver.received.length >= 3 ? true : undefined), 10_000, 'three attempts');
      // No fourth: the third was answered 200.
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(receiver.received.length, 3);
      const ids = new Set(receiver.received.map((r) => r.headers['x-ferry-delivery']));
      assert.equal(ids.size, 1, 'one delivery id on every attempt');
      for (const r of receiver.received) {
        assert.ok(r.signatureValid, 'signature checks out with the shared secret');
        assert.equal(r.headers['x-ferry-event'], 'task.succeeded');
        assert.equal(r.headers['content-type'], 'application/json');
        assert.ok(Math.abs(Number(r.headers['x-ferry-timestamp']) - Date.now() / 1000) < 30);
        assert.equal(r.json.id, r.headers['x-ferry-delivery']);
        assert.equal(r.json.event, 'task.succeeded');
        assert.equal(r.json.task?.id, taskId);
        assert.equal(r.json.task?.state, 'succeeded');
        assert.match(
          String(r.json.task?.name),
          /^copy \[\/local\]\(\/src-\d+\/a\.txt\) to \[\/local\]\(\/dst-\d+\)$/,
        );
        assert.ok(!Number.isNaN(Date.parse(r.json.created_at)));
      }
      assert.equal(new Set(receiver.received.map((r) => r.body)).size, 1, 'the same body on every attempt');

      const log = await admin<DeliveryRow[]>('GET', `/api/admin/webhook/deliveries?id=${hook.id}`);
      assert.equal(log.code, 200, log.message);
      assert.deepEqual(
        log.data.map((d) => [d.attempt, d.status_code]),
        [
          [3, 200],
          [2, 500],
          [1, 500],
        ],
        'newest first',
      );
      const [third, second, first] = log.data;
      assert.ok(third && second && first);
      for (const d of log.data) {
        assert.equal(d.id, receiver.received[0]?.headers['x-ferry-delivery']);
        assert.equal(d.event, 'task.succeeded');
        assert.equal(typeof d.duration_ms, 'number');
      }
      assert.ok(third.delivered_at && third.next_attempt_at === null && third.error === '');
      assert.equal(third.state, 'delivered');
      assert.ok(first.next_attempt_at && first.delivered_at === null);
      assert.match(first.error, /HTTP 500/);
    } finally {
      await receiver.close();
    }
  });

  it('sends only subscribed events and kinds', async () => {
    const receiver = await startReceiver(SECRET);
    try {
      const failedOnly = await create({ url: receiver.url, secret: SECRET, events: ['task.failed'] });
      const uploadsOnly = await create({
        url: receiver.url,
        secret: SECRET,
        events: ['task.succeeded'],
        kinds: ['upload'],
      });
      const disabled = await create({
        url: receiver.url,
        secret: SECRET,
        events: ['task.succeeded'],
        enabled: false,
      });
      await copyOne();
      const put = await h.putAsTask('/local/uploaded.txt', Buffer.from('hello'));
      assert.equal(put.code, 200, put.message);
      await h.finished('upload', put.data.task.id);
      await waitFor(async () => (receiver.received.length >= 1 ? true : undefined), 10_000, 'a delivery');
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        receiver.received.map((r) => [r.json.event, r.json.task?.type]),
        [['task.succeeded', 'upload']],
      );
      for (const hook of [failedOnly, uploadsOnly, disabled])
        assert.equal((await admin('POST', `/api/admin/webhook/delete?id=${hook.id}`)).code, 200);
    } finally {
      await receiver.close();
    }
  });

  it('sends task.failed and task.canceled with the task as it ended', async () => {
    const receiver = await startReceiver(SECRET);
    // An origin that refuses one file for good (404) and never finishes another.
    const origin = createServer((req, res) => {
      if (req.url === '/missing.bin') res.writeHead(404).end('no');
      else res.writeHead(200, { 'content-length': '1000000' }).write('x');
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    try {
      const hook = await create({
        url: receiver.url,
        secret: SECRET,
        events: ['task.failed', 'task.canceled'],
        kinds: ['offline_download'],
      });
      const add = async (file: string) => {
        const res = await admin<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
          urls: [`${base}/${file}`],
          path: '/local/downloads',
          tool: 'SimpleHttp',
        });
        assert.equal(res.code, 200, res.message);
        return res.data.tasks[0]?.id ?? '';
      };
      const failedId = await add('missing.bin');
      const slowId = await add('slow.bin');
      await waitFor(async () =>
        (await h.task('offline_download', slowId))?.state === 'running' ? true : undefined,
      );
      assert.equal((await admin('POST', `/api/task/offline_download/cancel?tid=${slowId}`)).code, 200);
      await h.finished('offline_download', slowId);
      await h.finished('offline_download', failedId);
      await waitFor(async () => (receiver.received.length >= 2 ? true : undefined), 10_000, 'two events');
      const byTask = new Map(receiver.received.map((r) => [r.json.task?.id, r]));
      const failed = byTask.get(failedId);
      assert.equal(failed?.json.event, 'task.failed');
      assert.equal(failed?.headers['x-ferry-event'], 'task.failed');
      assert.equal(failed?.json.task?.state, 'failed');
      assert.match(String(failed?.json.task?.error), /404/);
      const canceled = byTask.get(slowId);
      assert.equal(canceled?.json.event, 'task.canceled');
      assert.equal(canceled?.json.task?.state, 'canceled');
      assert.ok(receiver.received.every((r) => r.signatureValid));
      assert.equal((await admin('POST', `/api/admin/webhook/delete?id=${hook.id}`)).code, 200);
    } finally {
      origin.closeAllConnections();
      await new Promise((resolve) => origin.close(resolve));
      await receiver.close();
    }
  });

  it('test sends a signed ping; redeliver sends the same delivery again', async () => {
    const receiver = await startReceiver(SECRET);
    try {
      const hook = await create({ url: receiver.url, secret: SECRET, events: ['task.failed'] });
      const sent = await admin<{ delivery_id: string }>('POST', `/api/admin/webhook/test?id=${hook.id}`);
      assert.equal(sent.code, 200, sent.message);
      await waitFor(async () => (receiver.received.length >= 1 ? true : undefined), 10_000, 'the ping');
      const ping = receiver.received[0];
      assert.ok(ping?.signatureValid);
      assert.equal(ping.headers['x-ferry-event'], 'ping');
      assert.equal(ping.headers['x-ferry-delivery'], sent.data.delivery_id);
      assert.equal(ping.json.task, null);

      // Once the first attempt is recorded (while it is under way, redeliver says so).
      await waitFor(
        async () => {
          const log = await admin<DeliveryRow[]>('GET', `/api/admin/webhook/deliveries?id=${hook.id}`);
          return log.data[0]?.state === 'delivered' ? true : undefined;
        },
        5000,
        'the ping to be recorded',
      );
      const again = await admin('POST', `/api/admin/webhook/redeliver?delivery_id=${sent.data.delivery_id}`);
      assert.equal(again.code, 200, again.message);
      await waitFor(async () => (receiver.received.length >= 2 ? true : undefined), 10_000, 'the redelivery');
      assert.equal(receiver.received[1]?.headers['x-ferry-delivery'], sent.data.delivery_id);
      assert.equal(receiver.received[1]?.body, ping.body);
      await waitFor(
        async () => {
          const log = await admin<DeliveryRow[]>('GET', `/api/admin/webhook/deliveries?id=${hook.id}`);
          return log.data.length === 2 && log.data[0]?.attempt === 2 ? true : undefined;
        },
        5000,
        'two attempts in the log',
      );

      const unknown = await admin('POST', '/api/admin/webhook/redeliver?delivery_id=nope');
      assert.equal(unknown.code, 404);
    } finally {
      await receiver.close();
    }
  });

  it('gives up after the retry window: the delivery is failed, with every attempt logged', async () => {
    const receiver = await startReceiver(SECRET, () => 503);
    const short = await startHarness({
      webhooks: { retryBaseDelayMs: 100, retryMaxDelayMs: 200, retryWindowMs: 800, pollIntervalMs: 50 },
    });
    try {
      const res = await short.json<HookView>('POST', '/api/admin/webhook/create', {
        token: short.adminToken,
        body: { url: receiver.url, secret: SECRET, events: ['task.failed'] },
      });
      assert.equal(res.code, 200, res.message);
      await short.json('POST', `/api/admin/webhook/test?id=${res.data.id}`, { token: short.adminToken });
      const log = await waitFor(
        async () => {
          const l = await short.json<DeliveryRow[]>(
            'GET',
            `/api/admin/webhook/deliveries?id=${res.data.id}`,
            {
              token: short.adminToken,
            },
          );
          return l.data[0]?.state === 'failed' ? l.data : undefined;
        },
        10_000,
        'the delivery to fail',
      );
      assert.ok(log.length >= 2, 'retried before giving up');
      assert.equal(log.length, receiver.received.length);
      assert.equal(log[0]?.next_attempt_at, null);
      assert.match(log[0]?.error ?? '', /HTTP 503/);
    } finally {
      await short.close();
      await receiver.close();
    }
  });

  it('an attempt that gets no answer within the timeout is retried', async () => {
    const receiver = await startReceiver(SECRET, (n) => (n === 1 ? 'hang' : 200));
    const quick = await startHarness({
      webhooks: { retryBaseDelayMs: 100, retryMaxDelayMs: 200, pollIntervalMs: 50, timeoutMs: 300 },
    });
    try {
      const res = await quick.json<HookView>('POST', '/api/admin/webhook/create', {
        token: quick.adminToken,
        body: { url: receiver.url, secret: SECRET, events: ['task.failed'] },
      });
      const sent = await quick.json<{ delivery_id: string }>(
        'POST',
        `/api/admin/webhook/test?id=${res.data.id}`,
        {
          token: quick.adminToken,
        },
      );
      // While the first attempt hangs, a redeliver is refused rather than lost.
      await waitFor(
        async () => (receiver.received.length >= 1 ? true : undefined),
        5000,
        'the first attempt',
      );
      const busy = await quick.json(
        'POST',
        `/api/admin/webhook/redeliver?delivery_id=${sent.data.delivery_id}`,
        {
          token: quick.adminToken,
        },
      );
      assert.equal(busy.code, 400);
      assert.match(busy.message, /under way/);
      const log = await waitFor(
        async () => {
          const l = await quick.json<DeliveryRow[]>(
            'GET',
            `/api/admin/webhook/deliveries?id=${res.data.id}`,
            {
              token: quick.adminToken,
            },
          );
          return l.data[0]?.state === 'delivered' ? l.data : undefined;
        },
        10_000,
        'the second attempt to deliver',
      );
      assert.deepEqual(
        log.map((d) => [d.attempt, d.status_code]),
        [
          [2, 200],
          [1, null],
        ],
      );
      assert.equal(log[1]?.error, 'timed out');
    } finally {
      await quick.close();
      await receiver.close();
    }
  });

  it('does not hold up shutdown for an attempt that gets no answer', async () => {
    const receiver = await startReceiver(SECRET, () => 'hang');
    const node = await startHarness({ webhooks: { pollIntervalMs: 50, timeoutMs: 10_000 } });
    try {
      const res = await node.json<HookView>('POST', '/api/admin/webhook/create', {
        token: node.adminToken,
        body: { url: receiver.url, secret: SECRET, events: ['task.failed'] },
      });
      await node.json('POST', `/api/admin/webhook/test?id=${res.data.id}`, { token: node.adminToken });
      await waitFor(async () => (receiver.received.length >= 1 ? true : undefined), 5000, 'the attempt');
      const started = Date.now();
      await node.close();
      assert.ok(
        Date.now() - started < 3000,
        `closed in ${Date.now() - started} ms, not after the 10 s timeout`,
      );
    } finally {
      await receiver.close();
    }
  });

  it('manages webhooks: list, get and update never show the secret; update keeps it when left out', async () => {
    const hook = await create({
      url: 'http://10.1.2.3:9000/hook',
      secret: 'first',
      events: ['task.failed', 'task.canceled'],
      kinds: ['copy', 'move'],
    });
    assert.equal(hook.secret, '');
    assert.equal(hook.has_secret, true);
    assert.deepEqual(hook.kinds, ['copy', 'move']);
    assert.equal(hook.enabled, true);
    const got = await admin<HookView>('GET', `/api/admin/webhook/get?id=${hook.id}`);
    assert.deepEqual(got.data, hook);
    const list = await admin<{ content: HookView[]; total: number }>('GET', '/api/admin/webhook/list');
    assert.ok(list.data.content.some((w) => w.id === hook.id));
    assert.ok(list.data.content.every((w) => w.secret === ''));

    const updated = await admin<HookView>('POST', '/api/admin/webhook/update', {
      ...got.data,
      url: 'http://localhost:9001/other',
      enabled: false,
    });
    assert.equal(updated.code, 200, updated.message);
    assert.equal(updated.data.url, 'http://localhost:9001/other');
    assert.equal(updated.data.enabled, false);
    assert.equal(updated.data.has_secret, true);

    assert.equal((await admin('POST', `/api/admin/webhook/delete?id=${hook.id}`)).code, 200);
    assert.equal((await admin('GET', `/api/admin/webhook/get?id=${hook.id}`)).code, 404);
    assert.equal((await admin('POST', `/api/admin/webhook/delete?id=${hook.id}`)).code, 404);
    assert.equal((await admin('GET', '/api/admin/webhook/get?id=abc')).code, 400);
  });

  it('refuses link-local and metadata targets and malformed input with a clear 400', async () => {
    const base = { secret: 's', events: ['task.succeeded'] };
    const refused = [
      'http://169.254.169.254/latest/meta-data/',
      'http://[fe80::1]/hook',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://100.100.100.200/',
      'http://[::ffff:169.254.169.254]/',
    ];
    for (const url of refused) {
      const res = await admin('POST', '/api/admin/webhook/create', { ...base, url });
      assert.equal(res.code, 400, `${url}: ${res.message}`);
      assert.match(res.message, /link-local or metadata/);
    }
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ ...base, url: 'ftp://127.0.0.1/' }, /http/],
      [{ ...base, url: 'not a url' }, /not a URL/],
      [{ ...base, url: 'http://user:pw@127.0.0.1/' }, /password/],
      [{ url: 'http://127.0.0.1/', events: ['task.succeeded'] }, /secret/],
      [{ ...base, url: 'http://127.0.0.1/', events: [] }, /events/],
      [{ ...base, url: 'http://127.0.0.1/', events: ['task.exploded'] }, /events/],
      [{ ...base, url: 'http://127.0.0.1/', kinds: ['nope'] }, /kinds/],
      [{ ...base, url: 'http://127.0.0.1/', enabled: 'yes' }, /enabled/],
    ];
    for (const [body, message] of bad) {
      const res = await admin('POST', '/api/admin/webhook/create', body);
      assert.equal(res.code, 400, JSON.stringify(body));
      assert.match(res.message, message);
    }
    const raw = await h.call('POST', '/api/admin/webhook/create', {
      token: h.adminToken,
      body: '[1,2',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(raw.statusCode, 200);
    assert.equal(JSON.parse(raw.body).code, 400);
  });

  it('refuses everyone but admins', async () => {
    const user = await h.user('hook-user');
    for (const [method, path] of [
      ['GET', '/api/admin/webhook/list'],
      ['POST', '/api/admin/webhook/create'],
      ['GET', '/api/admin/webhook/deliveries?id=1'],
      ['POST', '/api/admin/webhook/redeliver?delivery_id=x'],
    ] as const) {
      const asUser = await h.json(method, path, { token: user, body: {} });
      assert.equal(asUser.code, 403, `${path} as a general user`);
      const anonymous = await h.json(method, path, { body: {} });
      assert.ok(anonymous.code === 401 || anonymous.code === 403, `${path} with no token: ${anonymous.code}`);
    }
  });
});
