/**
 * ferry's benchmarks: `npm run bench` runs them all, `npm run bench -- <name> [<name>…]` some.
 *
 *   copy-large  one 2 GiB random file Local → Local vs `cp` (goal ≤ 1.25× cp)
 *   copy-small  10,000 × 4 KiB files in a tree vs `cp -r` and `rclone copy --transfers 8`
 *               (goal: faster than rclone)
 *   tasks       (a) 10,000 tiny copy tasks (goal ≥ 1,000 tasks/s); (b) 1,000,000 stored tasks:
 *               info / done page / cursor paging latency (goal p99 ≤ 5 ms), RSS (goal ≤ 200 MB)
 *   drivers     1 GiB Local → S3 and S3 → Local (s3rver) vs `rclone copy` (goal ≤ 1.10× rclone);
 *               10,000 × 4 KiB files Local → WebDAV (`rclone serve webdav`)
 *               vs `rclone copy --transfers 8` (goal ≤ 1.10×); BENCH_S3_BYTES, BENCH_DAV_FILES
 *   offline     a 1 GiB random file from a local nginx by ferry's offline download (SimpleHttp, and
 *               aria2 when ferry can start aria2c) into /local vs `curl -o` and `aria2c -x1 -s1`
 *               (goal: SimpleHttp ≤ 1.5× curl, aria2 ≤ 1.10× aria2c); BENCH_DOWNLOAD_BYTES
 *   extract     ferry's decompress into /local of a stored zip and a tar.gz of one tree (10,000 random
 *               files, 1 GiB) vs `unzip -q -o` and `tar xzf` (goal ≤ 1.30×); BENCH_EXTRACT_BYTES,
 *               BENCH_EXTRACT_FILES
 *   loader      context: idle RSS of the server under tsx vs compiled to JS
 *   scale-out   tiny copy tasks/s end to end with 1 and with 2 nodes on one PostgreSQL (ratio);
 *               BENCH_SCALE_TASKS, BENCH_POSTGRES_URL
 *   memory      peak RSS of a fresh server per transfer (Local → S3, S3 → Local, offline download),
 *               4 GiB against 1 GiB (goal ≤ 1.10×); BENCH_MEMORY_SMALL_BYTES, BENCH_MEMORY_LARGE_BYTES,
 *               BENCH_MEMORY_TRANSFERS
 *
 * Each benchmark starts a real ferry server (bundled as `npm start` runs it; BENCH_TSX=1 for tsx) on a free port with its own
 * data directory under `.bench-tmp/` (or $FERRY_BENCH_DIR), drives it over HTTP and reads the
 * server's peak RSS (VmHWM) from /proc. Everything is removed at the end. Sizes can be scaled
 * down for a quick try: BENCH_LARGE_BYTES, BENCH_SMALL_FILES, BENCH_TINY_TASKS,
 * BENCH_STORED_TASKS, BENCH_REQUESTS, BENCH_RUNS (and per benchmark, above).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, statfs } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { copyLarge } from './copy-large.ts';
import { copySmall } from './copy-small.ts';
import { drivers } from './drivers.ts';
import { extract } from './extract.ts';
import {
  buildJs,
  cleanup,
  errorText,
  fmtMB,
  fmtS,
  loaderNote,
  log,
  now,
  onCleanup,
  PROJECT_ROOT,
  type Row,
  remove,
  startServer,
  useCompiledServer,
} from './lib.ts';
import { memoryBench } from './memory.ts';
import { offline } from './offline.ts';
import { scaleOut } from './scale-out.ts';
import { tasksBench } from './tasks.ts';

/** Context for the memory figures: the same server idle, under tsx and as `npm run build` bundles it. */
async function loader(root: string): Promise<Row[]> {
  const outDir = join(root, 'dist-loader');
  const entry = await buildJs(outDir);
  const idle = async (argv: string[] | undefined, name: string) => {
    const dataDir = join(root, `loader-${name}`);
    const server = await startServer({ dataDir, ...(argv && { argv }) });
    try {
      // A few requests so the routes' code has run once.
      await server.ok('GET', '/api/task/copy/done?per_page=10');
      await server.ok('POST', '/api/fs/list', { path: '/local' });
      await server.ok('GET', '/api/me');
      return { ...(await server.memory()), startMs: server.startMs };
    } finally {
      await server.stop();
      await remove(dataDir);
    }
  };
  const tsx = await idle(['--import', 'tsx', 'src/cli.ts', 'serve'], 'tsx');
  const js = await idle([entry, 'serve'], 'js');
  await remove(outDir);
  return [
    {
      bench: 'loader',
      figure: 'idle server after a few requests, `node --import tsx src/cli.ts serve`: RSS / peak / start',
      value: `${fmtMB(tsx.rssKb)} / ${fmtMB(tsx.hwmKb)} / ${fmtS(tsx.startMs)}`,
    },
    {
      bench: 'loader',
      figure: 'same, bundled by `npm run build` (`node dist/cli.js serve`): RSS / peak / start',
      value: `${fmtMB(js.rssKb)} / ${fmtMB(js.hwmKb)} / ${fmtS(js.startMs)}`,
    },
  ];
}

const BENCHES: Record<string, (root: string) => Promise<Row[]>> = {
  loader,
  'copy-small': copySmall,
  'copy-large': copyLarge,
  tasks: tasksBench,
  drivers,
  offline,
  extract,
  'scale-out': scaleOut,
  memory: memoryBench,
};

function environment(): string {
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  const version = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0]?.trim() ?? '?';
    } catch {
      return 'missing';
    }
  };
  const dirty = git(['status', '--porcelain', '--', 'src']) ? ' (src modified)' : '';
  return [
    `ferry ${git(['rev-parse', '--short', 'HEAD'])}${dirty}; node ${process.version}; ${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    `${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM; Linux ${release()}; ${version('cp', ['--version'])}; ${version('rclone', ['version'])}`,
  ].join('\n');
}

async function loadAverage(): Promise<string> {
  return (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ')[0] ?? '?';
}

function table(rows: Row[]): string {
  const header = ['benchmark', 'figure', 'value', 'ratio', 'goal', 'met?'];
  const cells = rows.map((r) => [
    r.bench,
    r.figure,
    r.value,
    r.ratio ?? '',
    r.goal ?? '',
    r.met === undefined || r.met === null ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i] ?? 0)).join(' │ ');
  return [line(header), widths.map((w) => '─'.repeat(w)).join('─┼─'), ...cells.map(line)].join('\n');
}

function markdown(rows: Row[]): string {
  const esc = (s: string) => s.replaceAll('|', '\\|');
  return [
    '| benchmark | figure | value | ratio | goal | met? |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.bench} | ${esc(r.figure)} | ${esc(r.value)} | ${r.ratio ?? ''} | ${r.goal ?? ''} | ${
          r.met === undefined || r.met === null ? '' : r.met ? 'yes' : '**no**'
        } |`,
    ),
  ].join('\n');
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`usage: npm run bench [-- ${Object.keys(BENCHES).join('|')} …]\n`);
    return 0;
  }
  const unknown = args.filter((a) => !(a in BENCHES));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown benchmark ${unknown.join(', ')}; one of: ${Object.keys(BENCHES).join(', ')}\n`,
    );
    return 2;
  }
  const selected = args.length > 0 ? args : Object.keys(BENCHES);

  const base = process.env.FERRY_BENCH_DIR ?? join(PROJECT_ROOT, '.bench-tmp');
  const root = join(base, `run-${Date.now()}-${process.pid}`);
  await mkdir(root, { recursive: true });
  onCleanup(() => remove(root));
  const fs = await statfs(root);
  const freeGiB = (fs.bavail * fs.bsize) / 1024 ** 3;
  if (selected.includes('copy-large') && freeGiB < 7)
    log(`warning: only ${freeGiB.toFixed(1)} GiB free under ${base}; copy-large needs about 6 GiB`);

  // `npm start` runs the server bundled by `npm run build`, so that is what is measured by
  // default; the tsx loader (about 70 MB more RSS, see `loader`) only with BENCH_TSX=1.
  if (process.env.BENCH_TSX === '1') {
    log('BENCH_TSX=1: the servers run under the tsx loader');
  } else {
    log('bundling src as npm run build does; the servers run as plain JavaScript');
    useCompiledServer(await buildJs(join(root, 'dist')));
  }
  const started = new Date();
  const loadBefore = await loadAverage();
  log(`benchmarks: ${selected.join(', ')} in ${root}`);
  const rows: Row[] = [];
  let failed = false;
  const t0 = now();
  for (const name of selected) {
    const bench = BENCHES[name];
    if (!bench) continue;
    const t = now();
    try {
      rows.push(...(await bench(root)));
      log(`${name} done in ${fmtS(now() - t)}`);
    } catch (err) {
      failed = true;
      log(`${name} FAILED: ${errorText(err)}`);
      rows.push({ bench: name, figure: 'FAILED', value: errorText(err).split('\n')[0] ?? '', met: false });
    }
  }
  const env = `${environment()}\nservers: ${loaderNote()}; load average (1 min) before: ${loadBefore}, after: ${await loadAverage()} (other processes share the CPUs)`;
  const date = started.toISOString().slice(0, 10);
  const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  process.stdout.write(
    `\nferry benchmarks, ${started.toISOString()} (${fmtS(now() - t0)} in all)\n${env}\n\n`,
  );
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(`Markdown (for README.md), ${date}, \`${command}\`:\n\n${markdown(rows)}\n`);
  return failed ? 1 : 0;
}

const watchdog = setTimeout(
  () => {
    log('the benchmarks took more than 30 minutes; stopping');
    void cleanup().finally(() => process.exit(1));
  },
  Number(process.env.BENCH_TIMEOUT_MS ?? 30 * 60_000),
);
watchdog.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping servers and removing temp files`);
    void cleanup().finally(() => process.exit(130));
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`benchmarks failed: ${errorText(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
