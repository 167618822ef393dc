/**
 * offline: ferry's offline download of one big random file from a local nginx, against `curl -o`
 * and a single-connection `aria2c` of the same URL in the same run.
 *
 * nginx runs in the foreground as this runner's child with its own minimal config (temp paths,
 * pid and logs in its own temp folder, `sendfile on`, no access log) on a free loopback port.
 * ferry's time runs from `POST /api/fs/add_offline_download` until the `offline_download` task
 * and then its `offline_download_transfer` task (id `<download id>-t0`) have succeeded, i.e.
 * until the whole file is in place in `/local` (a rename: the download area is on the same
 * file system). By default ferry fsyncs the file before its task succeeds, the references do not:
 * that ferry is compared with their time plus a `sync -f` of the file, timed right after. A second
 * server with FERRY_SYNC_FILES=false leaves the flush to the kernel, as they do, and is compared
 * with their time alone.
 * ferry's tool `aria2` is timed too when ferry can start its own `aria2c`. One tiny download per
 * ferry tool before the timings loads the tool (undici; ferry's aria2c daemon) so no run pays
 * for the start-up. Best of BENCH_RUNS, medians shown; `sync` before every timing, the order
 * rotates between runs; every output's size is checked, and its sha256 once per tool.
 * BENCH_OFFLINE_TOOLS=http,curl (short names: http, http-unflushed, aria2, aria2-unflushed, curl,
 * aria2c) times only those, e.g. for the peak RSS of a 4 GiB SimpleHttp download alone.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  errorText,
  fmtMB,
  fmtRatio,
  fmtS,
  fmtSize,
  freePort,
  loaderNote,
  log,
  median,
  now,
  portOpen,
  type Row,
  remove,
  run,
  type Server,
  type Service,
  service,
  sha256,
  sleep,
  startServer,
  syncDisks,
  withTimeout,
  writeRandomFile,
} from './lib.ts';

const BENCH = 'offline';
const UNFLUSHED = ', syncFiles false';
const UNFLUSHED_HTTP = `ferry SimpleHttp${UNFLUSHED}`;
const UNFLUSHED_ARIA2 = `ferry aria2${UNFLUSHED}`;
const RUN_MS = 900_000;
const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

/** nginx in the foreground serving `root` on a free loopback port; its files live in `dir`. */
export async function startNginx(dir: string, root: string): Promise<Service & { origin: string }> {
  const port = await freePort();
  await mkdir(dir, { recursive: true });
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    // One process (no master): nothing outlives a SIGKILL, and no switch to `nobody` as root.
    `daemon off;
master_process off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  );
  // -e: the error log before the config is read (the default, /var/log/nginx, may not be ours).
  const nginx = service(NGINX, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { cwd: dir });
  await withTimeout('nginx start-up', 15_000, async () => {
    for (;;) {
      if (nginx.child.exitCode !== null) throw new Error(`nginx exited: ${nginx.output()}`);
      if (await portOpen(port)) return;
      await sleep(50);
    }
  });
  return { ...nginx, origin: `http://127.0.0.1:${port}` };
}

/** One ferry offline download into `dstDir`; resolves with its time until the file is placed. */
async function ferryDownload(
  server: Server,
  url: string,
  dstDir: string,
  tool: 'SimpleHttp' | 'aria2',
  timeoutMs = RUN_MS,
) {
  const t0 = now();
  const created = await server.ok<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
    urls: [url],
    path: dstDir,
    tool,
    delete_policy: 'delete_on_upload_succeed',
  });
  const tid = created.tasks[0]?.id;
  if (!tid) throw new Error('add_offline_download created no task');
  await server.waitTask('offline_download', tid, { timeoutMs, intervalMs: 20 });
  // The download's hand-off queued this transfer before the download task succeeded.
  const transfer = await server.waitTask('offline_download_transfer', `${tid}-t0`, {
    timeoutMs,
    intervalMs: 20,
  });
  return { ms: now() - t0, transfer };
}

/**
 * The most a ferry tool may take, as a multiple of the reference's time. SimpleHttp (undici, a
 * maintained client with keep-alive and proxies) is allowed 1.5× curl on loopback, where nothing
 * else limits the speed (issue 21); real downloads are bound by the network.
 */
function goalOf(ferryTool: string): number {
  return ferryTool.startsWith('ferry SimpleHttp') ? 1.5 : 1.1;
}

/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux). */
const TICKS = 100;

/** CPU seconds (user + system, all threads) `pid` has used so far, from /proc/<pid>/stat. */
async function cpuOf(pid: number): Promise<number> {
  // The fields after the command name, which is in parentheses and may hold spaces.
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(stat[11]) + Number(stat[12])) / TICKS;
}

/** CPU seconds this process's finished children have used (cutime + cstime of /proc/self/stat). */
async function childrenCpu(): Promise<number> {
  const stat = (await readFile('/proc/self/stat', 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(stat[13]) + Number(stat[14])) / TICKS;
}

/** Short names for BENCH_OFFLINE_TOOLS, by the tools' labels. */
const SHORT_NAMES: Record<string, string> = {
  'ferry SimpleHttp': 'http',
  'ferry aria2': 'aria2',
  [UNFLUSHED_HTTP]: 'http-unflushed',
  [UNFLUSHED_ARIA2]: 'aria2-unflushed',
  curl: 'curl',
  aria2c: 'aria2c',
};

/** The tools to time: all of them, or those a comma-separated list of short names picks. */
function pickTools(names: string[], list: string | undefined): string[] {
  if (!list) return names;
  const wanted = new Set(list.split(',').map((s) => s.trim()));
  const unknown = [...wanted].filter((w) => !Object.values(SHORT_NAMES).includes(w));
  if (unknown.length > 0)
    throw new Error(
      `BENCH_OFFLINE_TOOLS: unknown ${unknown.join(', ')} (${Object.values(SHORT_NAMES).join(', ')})`,
    );
  return names.filter((n) => wanted.has(SHORT_NAMES[n] ?? n));
}

const all = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ');

export async function offline(root: string): Promise<Row[]> {
  const bytes = Number(process.env.BENCH_DOWNLOAD_BYTES ?? 1024 ** 3);
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  const dataDir = join(root, 'offline');
  const unflushedDir = join(root, 'offline-unflushed');
  const files = join(dataDir, 'files');
  const www = join(root, 'offline-www');
  const nginxDir = join(root, 'offline-nginx');
  const outDir = join(root, 'offline-out');
  for (const [tool, pkg] of [
    ['curl', 'curl'],
    ['aria2c', 'aria2'],
  ])
    await run(tool as string, ['--version']).catch(() => {
      throw new Error(`${tool} is missing (Debian package ${pkg})`);
    });
  const dirs = [dataDir, unflushedDir, www, nginxDir, outDir];
  for (const dir of [files, www, outDir]) await mkdir(dir, { recursive: true });
  log(`${BENCH}: writing ${fmtSize(bytes)} of random data`);
  const src = join(www, 'src.bin');
  await writeRandomFile(src, bytes);
  await writeFile(join(www, 'warm.bin'), 'warm-up\n');
  const srcHash = await sha256(src);

  const nginx = await startNginx(nginxDir, www);
  const servers: Server[] = [];
  try {
    const server = await startServer({ dataDir });
    servers.push(server);
    const unflushed = await startServer({ dataDir: unflushedDir, env: { FERRY_SYNC_FILES: 'false' } });
    servers.push(unflushed);
    const idle = await server.memory();
    log(`${BENCH}: servers up (pids ${server.pid}, ${unflushed.pid}), nginx ${nginx.origin}`);
    const url = `${nginx.origin}/src.bin`;

    // Warm-up, untimed: loads SimpleHttp, and starts ferry's aria2c (skipped when that fails).
    let aria2Skipped = '';
    for (const [s, dir] of [
      [server, dataDir],
      [unflushed, unflushedDir],
    ] as const) {
      await ferryDownload(s, `${nginx.origin}/warm.bin`, '/local/warm-http', 'SimpleHttp');
      try {
        // A failing start would be retried with backoff: a minute is plenty for 8 bytes.
        await ferryDownload(s, `${nginx.origin}/warm.bin`, '/local/warm-aria2', 'aria2', 60_000);
      } catch (err) {
        aria2Skipped = errorText(err).split('\n')[0] ?? 'failed';
        log(`${BENCH}: ferry with tool aria2 skipped: ${aria2Skipped}`);
      }
      await remove(join(dir, 'files', 'warm-http'));
      await remove(join(dir, 'files', 'warm-aria2'));
    }

    const checked = new Set<string>();
    const check = async (who: string, out: string) => {
      const size = (await stat(out)).size;
      if (size !== bytes) throw new Error(`${who}: ${out} has ${size} bytes, want ${bytes}`);
      if (!checked.has(who)) {
        if ((await sha256(out)) !== srcHash) throw new Error(`${who}: ${out} differs from the source`);
        checked.add(who);
      }
    };
    const ferryTool =
      (on: Server, onDir: string, tool: 'SimpleHttp' | 'aria2', label: string) => async (i: number) => {
        const dst = `dl-${label}-${i}`;
        const cpu0 = await cpuOf(on.pid);
        const { ms, transfer } = await ferryDownload(on, url, `/local/${dst}`, tool);
        if (tool === 'SimpleHttp') cpuSeconds[label]?.push((await cpuOf(on.pid)) - cpu0);
        if (transfer.processed_bytes !== bytes)
          throw new Error(
            `${label}: the transfer task says ${transfer.processed_bytes} bytes, want ${bytes}`,
          );
        await check(label, join(onDir, 'files', dst, 'src.bin'));
        await remove(join(onDir, 'files', dst));
        return ms;
      };
    // CPU seconds per run (user + system, all threads): steadier than times on a shared machine.
    const cpuSeconds: Record<string, number[]> = { 'ferry-http': [], 'ferry-http-unflushed': [], curl: [] };
    // By default ferry fsyncs a download before its task succeeds; curl and aria2c do not. Their
    // time plus a `sync -f` of the file, timed right after, is that ferry's comparable figure.
    const synced: Record<string, number[]> = { curl: [], aria2c: [] };
    const flushed = async (tool: string, ms: number, file: string) => {
      synced[tool]?.push(ms + (await run('sync', ['-f', file], { timeoutMs: RUN_MS })).ms);
    };
    const tools: Record<string, (i: number) => Promise<number>> = {
      'ferry SimpleHttp': ferryTool(server, dataDir, 'SimpleHttp', 'ferry-http'),
      ...(!aria2Skipped && { 'ferry aria2': ferryTool(server, dataDir, 'aria2', 'ferry-aria2') }),
      [UNFLUSHED_HTTP]: ferryTool(unflushed, unflushedDir, 'SimpleHttp', 'ferry-http-unflushed'),
      ...(!aria2Skipped && {
        [UNFLUSHED_ARIA2]: ferryTool(unflushed, unflushedDir, 'aria2', 'ferry-aria2-unflushed'),
      }),
      curl: async (i) => {
        const out = join(outDir, `curl-${i}.bin`);
        const cpu0 = await childrenCpu();
        const { ms } = await run('curl', ['-sS', '-f', '-o', out, url], { timeoutMs: RUN_MS });
        cpuSeconds.curl?.push((await childrenCpu()) - cpu0);
        await flushed('curl', ms, out);
        await check('curl', out);
        await remove(out);
        return ms;
      },
      aria2c: async (i) => {
        const dir = join(outDir, `aria2c-${i}`);
        const { ms } = await run(
          'aria2c',
          [
            '--no-conf=true',
            '-x1',
            '-s1',
            '--file-allocation=none',
            '--console-log-level=warn',
            '--summary-interval=0',
            '--download-result=hide',
            '-d',
            dir,
            '-o',
            'src.bin',
            url,
          ],
          { timeoutMs: RUN_MS },
        );
        await flushed('aria2c', ms, join(dir, 'src.bin'));
        await check('aria2c', join(dir, 'src.bin'));
        await remove(dir);
        return ms;
      },
    };
    // BENCH_OFFLINE_TOOLS picks some of them (e.g. `http,curl` for a quick 4 GiB memory run).
    const names = pickTools(Object.keys(tools), process.env.BENCH_OFFLINE_TOOLS);
    const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    for (let i = 0; i < runs; i++) {
      // Rotate: each tool goes first in turn.
      const order = names.map((_, k) => names[(k + i) % names.length] as string);
      for (const name of order) {
        await syncDisks();
        const ms = await (tools[name] as (i: number) => Promise<number>)(i);
        times[name]?.push(ms);
        log(`${BENCH}: run ${i + 1} ${name} ${fmtS(ms)}`);
      }
    }
    const mem = await server.memory();
    const memUnflushed = await unflushed.memory();

    const size = fmtSize(bytes);
    const rate = (ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
    const best = (name: string) => Math.min(...(times[name] ?? []));
    const labels: Record<string, string> = {
      'ferry SimpleHttp': `ferry offline download of ${size} (SimpleHttp) from nginx into /local, request → file in place`,
      'ferry aria2': 'ferry offline download, tool aria2 (ferry’s own aria2c), request → file in place',
      [UNFLUSHED_HTTP]:
        'ferry SimpleHttp with FERRY_SYNC_FILES=false (the file left to the kernel, as curl does)',
      [UNFLUSHED_ARIA2]: 'ferry aria2 with FERRY_SYNC_FILES=false',
      curl: 'curl -o of the same URL',
      aria2c: 'aria2c -x1 -s1 --file-allocation=none of the same URL',
    };
    const rows: Row[] = names.map((name) => ({
      bench: BENCH,
      figure: `${labels[name]}, best of ${runs} (${all(times[name] ?? [])} s)`,
      value: `${fmtS(best(name))} (${rate(best(name))})`,
    }));
    if (aria2Skipped)
      rows.push({ bench: BENCH, figure: 'ferry with tool aria2: skipped', value: aria2Skipped });
    const ratioRow = (ferry: string, refMs: number[], note: string, goal: boolean): Row => {
      const ratio = best(ferry) / Math.min(...refMs);
      const medians = median(times[ferry] ?? []) / median(refMs);
      const limit = goalOf(ferry);
      return {
        bench: BENCH,
        figure: `${ferry} / ${note}; best runs (medians: ${fmtRatio(medians)})`,
        value: '',
        ratio: fmtRatio(ratio),
        ...(goal && { goal: `≤ ${fmtRatio(limit)}`, met: ratio <= limit }),
      };
    };
    for (const ferry of names.filter((n) => n.startsWith('ferry ')))
      for (const ref of ['curl', 'aria2c'].filter((r) => names.includes(r))) {
        const refMs = times[ref] ?? [];
        if (ferry.endsWith(UNFLUSHED)) {
          rows.push(ratioRow(ferry, refMs, `${ref} — neither flushes`, true));
        } else {
          rows.push(
            ratioRow(ferry, synced[ref] ?? [], `(${ref} + sync -f of the file) — both flushed`, true),
          );
          rows.push(ratioRow(ferry, refMs, `${ref} (not flushed): what the flush costs here`, false));
        }
      }
    for (const [who, label] of [
      ['ferry-http', 'ferry SimpleHttp server'],
      ['ferry-http-unflushed', 'ferry SimpleHttp server, syncFiles false'],
      ['curl', 'curl -o'],
    ] as const) {
      const xs = cpuSeconds[who] ?? [];
      if (xs.length > 0)
        rows.push({
          bench: BENCH,
          figure: `CPU seconds (user + system) of ${label} per download, each run (${xs.map((x) => x.toFixed(2)).join(', ')})`,
          value: `median ${median(xs).toFixed(2)} s`,
        });
    }
    rows.push(
      {
        bench: BENCH,
        figure: `server peak RSS (VmHWM, ${loaderNote()}; ferry’s aria2c is a separate process)`,
        value: fmtMB(mem.hwmKb),
      },
      {
        bench: BENCH,
        figure: 'server peak RSS, FERRY_SYNC_FILES=false server',
        value: fmtMB(memUnflushed.hwmKb),
      },
      { bench: BENCH, figure: 'server RSS right after start (idle)', value: fmtMB(idle.rssKb) },
    );
    return rows;
  } finally {
    for (const server of servers) await server.stop();
    await nginx.stop();
    for (const dir of dirs) await remove(dir);
  }
}
