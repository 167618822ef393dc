import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { SqlTaskStore } from '../../src/store/sql-task-store.ts';
import { DIALECT_TRAITS } from '../../src/store/task-sql.ts';
import { WebhookStore } from '../../src/store/webhook-store.ts';
import { enqueueEvent } from '../../src/webhooks/outbox.ts';
import { testDatabases } from '../helpers/databases.ts';
import { openStore, type StoreFixture } from './store-fixture.ts';

/**
 * The webhook outbox in the store, once per database: a task's deliveries commit with its final
 * state or not at all; a delivery is claimed by one dispatcher at a time; a dispatcher that lost
 * its claim records nothing; finished deliveries are swept.
 */

for (const db of await testDatabases()) {
  describe(`webhook outbox on ${db.dialect}`, () => {
    let f: StoreFixture;
    let hooks: WebhookStore;
    let store: SqlTaskStore;
    before(async () => {
      f = await openStore(db);
      store = f.store as SqlTaskStore;
      hooks = new WebhookStore(f.opened.db, f.opened.dialect);
    });
    after(async () => {
      await f.close();
    });
    beforeEach(async () => {
      store.onFinal = null;
      await f.opened.db.deleteFrom('webhook_attempts').execute();
      await f.opened.db.deleteFrom('webhook_deliveries').execute();
      await f.opened.db.deleteFrom('webhooks').execute();
    });

    const deliveries = () => f.opened.db.selectFrom('webhook_deliveries').selectAll().execute();

    it('writes the deliveries of a final state with it, and neither when the listener fails', async () => {
      const hook = await hooks.create({
        url: 'http://127.0.0.1:1/',
        secret: 's',
        events: ['task.succeeded', 'task.canceled'],
        kinds: [],
        enabled: true,
      });
      let fail = false;
      store.onFinal = async (trx, tasks) => {
        for (const task of tasks)
          await enqueueEvent(trx, 'task.succeeded', { task: { id: task.id }, kind: task.kind });
        if (fail) throw new Error('listener failed after writing');
      };
      const [ok, broken] = await f.add(2);
      assert.ok(ok && broken);
      await f.force(ok.id, { state: 'running', lease_owner: 'w' });
      await f.force(broken.id, { state: 'running', lease_owner: 'w' });

      const moved = await store.move(ok.id, 'succeeded', { from: ['running'] });
      assert.equal(moved?.state, 'succeeded');
      const rows = await deliveries();
      assert.equal(rows.length, 1);
      assert.equal(Number(rows[0]?.webhook_id), hook.id);
      assert.equal(JSON.parse(rows[0]?.body ?? '{}').task.id, ok.id);

      fail = true;
      await assert.rejects(store.move(broken.id, 'succeeded', { from: ['running'] }), /listener failed/);
      assert.equal((await store.get(broken.id))?.state, 'running', 'the state change was undone too');
      assert.equal((await deliveries()).length, 1, 'and its deliveries');
      fail = false;

      // A state that is not final tells nobody.
      await store.move(broken.id, 'errored', { from: ['running'] });
      assert.equal((await deliveries()).length, 1);
    });

    it('tells of tasks a reclaim ends (a dead worker, a cancel asked)', async () => {
      const ended: string[] = [];
      store.onFinal = async (_trx, tasks) => {
        for (const t of tasks) ended.push(`${t.id}:${t.state}`);
      };
      const [canceled, requeued] = await f.add(2);
      assert.ok(canceled && requeued);
      const past = Date.now() - 1000;
      await f.force(canceled.id, {
        state: 'running',
        lease_owner: 'dead',
        lease_until: past,
        cancel_requested: 1,
      });
      await f.force(requeued.id, { state: 'running', lease_owner: 'dead', lease_until: past });
      // The running one goes back to the queue (SQLite) or stays for a claim to take over (a
      // shared store): neither is final, so only the canceled one is told of.
      const back = DIALECT_TRAITS[f.opened.dialect].takeOverInClaim ? 0 : 1;
      assert.equal(await store.reclaimExpired(Date.now()), back);
      assert.deepEqual(ended, [`${canceled.id}:canceled`]);
    });

    it('claims a delivery for one dispatcher at a time; a lost claim records nothing', async () => {
      const hook = await hooks.create({
        url: 'http://127.0.0.1:1/',
        secret: 's',
        events: ['task.failed'],
        kinds: [],
        enabled: true,
      });
      const now = Date.now();
      await hooks.insertDeliveries(
        [1, 2, 3].map((i) => ({ id: `d${i}`, webhookId: hook.id, event: 'ping', body: '{}' })),
        now,
        now + 60_000,
      );
      const [first, second] = await Promise.all([
        hooks.claimDue(2, now + 5000, now),
        hooks.claimDue(2, now + 6000, now),
      ]);
      const claimed = [...first, ...second].map((d) => d.id).sort();
      assert.deepEqual(claimed, ['d1', 'd2', 'd3'], 'every delivery claimed once between the two');
      assert.deepEqual(await hooks.claimDue(10, now + 7000, now + 1), [], 'none while leased');

      const d = first[0] ?? second[0];
      assert.ok(d);
      const lease = first.includes(d) ? now + 5000 : now + 6000;
      const outcome = {
        statusCode: 500,
        error: 'HTTP 500',
        durationMs: 3,
        delivered: false,
        nextAttemptAt: now + 100,
      };
      assert.equal(await hooks.recordAttempt(d, lease + 1, outcome), null, 'not the claim it holds');
      assert.equal(await hooks.recordAttempt(d, lease, outcome), 'pending');
      // Its lease expired: another dispatcher may claim it once due.
      const again = await hooks.claimDue(10, now + 9000, now + 200);
      assert.deepEqual(
        again.map((x) => x.id),
        [d.id],
      );
      assert.equal(again[0]?.attempts, 1);
      const delivered = { ...outcome, statusCode: 204, error: '', delivered: true, nextAttemptAt: null };
      assert.equal(await hooks.recordAttempt(again[0]!, now + 9000, delivered), 'delivered');
      const log = await hooks.deliveriesOf(hook.id, 10);
      assert.deepEqual(
        log.attempts.filter((a) => a.deliveryId === d.id).map((a) => [a.attempt, a.statusCode]),
        [
          [2, 204],
          [1, 500],
        ],
      );

      // The sweep takes finished deliveries (and their log) only.
      assert.equal(await hooks.prune(now + 60_000, 100), 1);
      assert.deepEqual(
        (await deliveries()).map((r) => r.id).sort(),
        ['d1', 'd2', 'd3'].filter((id) => id !== d.id),
      );
      assert.equal((await hooks.deliveriesOf(hook.id, 10)).attempts.length, 0);
    });
  });
}
