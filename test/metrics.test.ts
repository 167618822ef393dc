import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import parsePrometheusTextFormat, { type MetricFamily, type Sample } from 'parse-prometheus-text-format';
import { type Harness, startHarness, waitFor } from './helpers/harness.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/**
 * `GET /metrics` read as Prometheus reads it: through a text-format parser, not by string matching.
 * The parser folds the buckets of every label set of a histogram into one sample; so the
 * histograms' series are read from a second parse without their `# TYPE … histogram` lines, where
 * `_bucket`, `_sum` and `_count` are (untyped) series of their own with their labels intact.
 */

type Labels = Record<string, string>;

function family(families: MetricFamily[], name: string): MetricFamily {
  const f = families.find((x) => x.name === name);
  assert.ok(f, `metric ${name} exported`);
  return f;
}

function sample(families: MetricFamily[], name: string, labels: Labels): Sample | undefined {
  return families
    .find((f) => f.name === name)
    ?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
}

/** A counter's or gauge's value for `labels`, 0 when the series is absent. */
function value(families: MetricFamily[], name: string, labels: Labels): number {
  return Number(sample(families, name, labels)?.value ?? 0);
}

describe('GET /metrics', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      tasks: { retryBaseDelayMs: 20, retryMaxDelayMs: 50 },
      webhooks: { retryBaseDelayMs: 50, pollIntervalMs: 50 },
    });
  });
  after(async () => {
    await h.close();
  });

  const scrape = async () => {
    const res = await h.call('GET', '/metrics');
    assert.equal(res.statusCode, 200, res.body);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const whole = parsePrometheusTextFormat(res.body);
    const flat = parsePrometheusTextFormat(res.body.replace(/^# TYPE \S+ histogram\n/gm, ''));
    // Label sets follow one another (buckets, sum, count of one, then the next): a name comes back
    // as several families there, merged here.
    const series = new Map<string, MetricFamily>();
    for (const f of flat.filter((x) => /_(bucket|sum|count)$/.test(x.name))) {
      const seen = series.get(f.name);
      if (seen) seen.metrics.push(...f.metrics);
      else series.set(f.name, { ...f, metrics: [...f.metrics] });
    }
    return [...whole, ...series.values()];
  };

  it('exports every metric of the issue and the process defaults', async () => {
    const m = await scrape();
    assert.equal(family(m, 'ferry_tasks').type, 'GAUGE');
    assert.equal(value(m, 'ferry_tasks', { kind: 'copy', state: 'succeeded' }), 0, 'zero series are there');
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ])
      family(m, name);
    // Declared before anything happened: HELP and TYPE are exported, series come with the first sample.
    const res = await h.call('GET', '/metrics');
    for (const name of [
      'ferry_task_duration_seconds',
      'ferry_bytes_transferred_total',
      'ferry_task_retries_total',
      'ferry_webhook_deliveries_total',
      'ferry_job_runs_total',
      'ferry_http_request_duration_seconds',
    ])
      assert.match(res.body, new RegExp(`^# TYPE ${name.replace(/_total$/, '(_total)?')} `, 'm'), name);
  });

  it('moves with tasks: counts by state, durations, bytes, retries, webhook attempts, HTTP routes', async () => {
    const before = await scrape();
    const receiver = await startReceiver('s', (n) => (n === 1 ? 500 : 200));
    const failing = createServer((_req, res) => res.writeHead(503).end('down'));
    await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve));
    try {
      const hook = await h.json('POST', '/api/admin/webhook/create', {
        token: h.adminToken,
        body: { url: receiver.url, secret: 's', events: ['task.succeeded'], kinds: ['copy'] },
      });
      assert.equal(hook.code, 200, hook.message);
      const src = join(h.dataDir, 'files', 'msrc');
      await mkdir(src, { recursive: true });
      const size = 300_000;
      await writeFile(join(src, 'big.bin'), Buffer.alloc(size, 7));
      const copy = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        token: h.adminToken,
        body: { src_dir: '/local/msrc', dst_dir: '/local/mdst', names: ['big.bin'] },
      });
      assert.equal(copy.code, 200, copy.message);
      const copied = await h.finished('copy', copy.data.tasks[0]?.id ?? '');
      assert.equal(copied.state, 'succeeded', copied.error);

      // A download whose origin answers 503: retried (maxRetry 3), then failed.
      const port = (failing.address() as AddressInfo).port;
      const dl = await h.json<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
        token: h.adminToken,
        body: { urls: [`http://127.0.0.1:${port}/file.bin`], path: '/local/dl', tool: 'SimpleHttp' },
      });
      assert.equal(dl.code, 200, dl.message);
      const failed = await h.finished('offline_download', dl.data.tasks[0]?.id ?? '');
      assert.equal(failed.state, 'failed');
      await waitFor(async () => (receiver.received.length >= 2 ? true : undefined), 10_000, 'the webhook');
      await new Promise((r) => setTimeout(r, 200));

      const now = await scrape();
      const delta = (name: string, labels: Labels) => value(now, name, labels) - value(before, name, labels);
      assert.equal(delta('ferry_tasks', { kind: 'copy', state: 'succeeded' }), 1);
      assert.equal(delta('ferry_tasks', { kind: 'offline_download', state: 'failed' }), 1);
      assert.ok(delta('ferry_bytes_transferred_total', { kind: 'copy' }) >= size);
      assert.equal(delta('ferry_task_retries_total', { kind: 'offline_download' }), 3);
      assert.equal(delta('ferry_webhook_deliveries_total', { outcome: 'retry' }), 1);
      assert.equal(delta('ferry_webhook_deliveries_total', { outcome: 'delivered' }), 1);

      assert.equal(family(now, 'ferry_task_duration_seconds').type, 'HISTOGRAM');
      const copyDone = { kind: 'copy', outcome: 'succeeded' };
      assert.equal(delta('ferry_task_duration_seconds_count', copyDone), 1);
      assert.ok(delta('ferry_task_duration_seconds_sum', copyDone) >= 0);
      assert.equal(delta('ferry_task_duration_seconds_bucket', { ...copyDone, le: '+Inf' }), 1);
      assert.equal(
        delta('ferry_task_duration_seconds_count', { kind: 'offline_download', outcome: 'failed' }),
        1,
      );

      // Route patterns, not raw URLs: one series for every task's info.
      const info = { method: 'POST', route: '/api/task/:type/:action', status_code: '200' };
      assert.ok(
        delta('ferry_http_request_duration_seconds_count', info) >= 2,
        'the info polls of both tasks',
      );
      const routes = family(now, 'ferry_http_request_duration_seconds_count').metrics.map(
        (s) => s.labels?.route ?? '',
      );
      assert.ok(
        routes.every((r) => !r.includes('?') && !/[0-9a-f]{16}/.test(r)),
        routes.join(' '),
      );
      await h.call('GET', '/api/no/such/route/12345');
      const after = await scrape();
      assert.equal(
        value(after, 'ferry_http_request_duration_seconds_count', { route: 'unmatched', status_code: '404' }),
        1,
      );
    } finally {
      await receiver.close();
      failing.closeAllConnections();
      await new Promise((resolve) => failing.close(resolve));
    }
  });
});

describe('GET /metrics with FERRY_METRICS_TOKEN', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ metrics: { token: 'scrape-me' } });
  });
  after(async () => {
    await h.close();
  });

  it('wants the bearer token', async () => {
    const none = await h.call('GET', '/metrics');
    assert.equal(none.statusCode, 401);
    assert.match(String(none.headers['www-authenticate']), /^Bearer/);
    assert.doesNotMatch(none.body, /ferry_tasks/);
    const wrong = await h.call('GET', '/metrics', { headers: { authorization: 'Bearer nope-nope' } });
    assert.equal(wrong.statusCode, 401);
    // An admin's AList token is not the metrics token.
    const asAdmin = await h.call('GET', '/metrics', { token: h.adminToken });
    assert.equal(asAdmin.statusCode, 401);
    const right = await h.call('GET', '/metrics', { headers: { authorization: 'Bearer scrape-me' } });
    assert.equal(right.statusCode, 200);
    assert.ok(parsePrometheusTextFormat(right.body).some((f) => f.name === 'ferry_tasks'));
  });
});
