import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from './helpers/databases.ts';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { type FerryProcess, spawnFerry } from './helpers/process.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/**
 * At least once, never silently lost: a real `ferry serve` killed with SIGKILL right after a task
 * ends still delivers its event after a restart; two nodes on one PostgreSQL never send the same
 * attempt twice.
 */

const SECRET = 'durable-secret';
const PASSWORD = 'webhooks-durable-password';

describe('webhook deliveries survive kill -9', () => {
  let dataDir: string;
  let server: FerryProcess | null = null;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ferry-webhooks-kill-'));
  });
  after(async () => {
    if (server) await server.kill9().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('delivers the event of a task that ended just before the process was killed', {
    timeout: 120_000,
  }, async () => {
    // The receiver does not answer until told to: whatever ferry sent before the kill got no 2xx.
    let answering = false;
    const receiver = await startReceiver(SECRET, () => (answering ? 200 : 'hang'));
    const env = {
      FERRY_ADMIN_PASSWORD: PASSWORD,
      FERRY_WEBHOOK_RETRY_BASE_MS: '100',
      FERRY_WEBHOOK_TIMEOUT_MS: '2000',
    };
    try {
      server = await spawnFerry(dataDir, env);
      const login = async (s: FerryProcess) =>
        (
          await s.api<{ token: string }>('POST', '/api/auth/login', {
            body: { username: 'admin', password: PASSWORD },
          })
        ).data.token;
      let token = await login(server);
      const hook = await server.api<{ id: number }>('POST', '/api/admin/webhook/create', {
        token,
        body: { url: receiver.url, secret: SECRET, events: ['task.succeeded'] },
      });
      assert.equal(hook.code, 200, hook.message);

      await mkdir(join(dataDir, 'files', 'src'), { recursive: true });
      await writeFile(join(dataDir, 'files', 'src', 'a.txt'), 'payload');
      const copy = await server.api<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token,
        body: { src_dir: '/local/src', dst_dir: '/local/dst', names: ['a.txt'] },
      });
      assert.equal(copy.code, 200, copy.message);
      const taskId = copy.data.tasks[0]?.id;
      assert.ok(taskId);
      const done = await server.finished(token, 'copy', taskId);
      assert.equal(done.state, 'succeeded');
      await server.kill9();
      const before = receiver.received.length;

      answering = true;
      server = await spawnFerry(dataDir, env);
      token = await login(server);
      const delivered = await waitFor(
        async () => receiver.received.find((r) => r.answered === 200),
        30_000,
        'the delivery after the restart',
      );
      assert.ok(delivered.signatureValid);
      assert.equal(delivered.json.event, 'task.succeeded');
      assert.equal(delivered.json.task?.id, taskId);
      // Every request, before the kill or after, was the same delivery.
      assert.equal(new Set(receiver.received.map((r) => r.headers['x-ferry-delivery'])).size, 1);
      console.log(`# ${before} attempt(s) before the kill, ${receiver.received.length - before} after`);
      const log = await waitFor(
        async () => {
          const l = await server?.api<{ state: string; delivered_at: string | null }[]>(
            'GET',
            `/api/admin/webhook/deliveries?id=${hook.data.id}`,
            { token },
          );
          return l?.data[0]?.state === 'delivered' ? l.data : undefined;
        },
        10_000,
        'the log to say delivered',
      );
      assert.ok(log[0]?.delivered_at);
      await server.stop();
    } finally {
      await receiver.close();
    }
  });
});

for (const database of (await testDatabases()).filter((d) => d.dialect === 'postgres')) {
  describe('two nodes on one PostgreSQL', () => {
    let nodes: Harness[] = [];
    let drop: () => Promise<void> = async () => undefined;
    before(async () => {
      const created = await database.create();
      drop = created.drop;
      const options = {
        ...(created.url && { databaseUrl: created.url }),
        webhooks: { retryBaseDelayMs: 100, pollIntervalMs: 20, concurrency: 4 },
      };
      // One after the other: the first runs the migrations.
      nodes = [await startHarness(options)];
      nodes.push(await startHarness(options));
    });
    after(async () => {
      for (const node of nodes) await node.close();
      await drop();
    });

    it('sends each delivery once, whichever node claims it', { timeout: 60_000 }, async () => {
      const receiver = await startReceiver(SECRET);
      try {
        const [a, b] = nodes;
        assert.ok(a && b);
        const hook = await a.json<{ id: number }>('POST', '/api/admin/webhook/create', {
          token: a.adminToken,
          body: { url: receiver.url, secret: SECRET, events: ['task.failed'] },
        });
        assert.equal(hook.code, 200, hook.message);
        const count = 40;
        const ids = await Promise.all(
          Array.from({ length: count }, (_, i) =>
            (i % 2 ? a : b)
              .json<{ delivery_id: string }>('POST', `/api/admin/webhook/test?id=${hook.data.id}`, {
                token: (i % 2 ? a : b).adminToken,
              })
              .then((r) => r.data.delivery_id),
          ),
        );
        await waitFor(
          async () => (receiver.received.length >= count ? true : undefined),
          30_000,
          'every ping',
        );
        await new Promise((r) => setTimeout(r, 500));
        const got = receiver.received.map((r) => String(r.headers['x-ferry-delivery']));
        assert.equal(got.length, count, 'no delivery sent twice');
        assert.deepEqual([...got].sort(), [...ids].sort());
        assert.ok(receiver.received.every((r) => r.signatureValid));
      } finally {
        await receiver.close();
      }
    });
  });
}
