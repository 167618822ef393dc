/**
 * extract: ferry's decompress task against the usual command-line tools, on the same archives in
 * the same run.
 *
 *   zip     a stored (`zip -r -q -0`) zip of a tree of random files (10,000 files, 1 GiB in all,
 *           100 per folder) into /local vs `unzip -q -o … -d <dir>`
 *   tar.gz  `tar czf` of the same tree (gzip's default level) into /local vs `tar xzf … -C <dir>`
 *
 * The archives are built before the timings (outside them); the data is random, so deflate
 * would not shrink it: the zip measures per-entry work and writing, the tar.gz inflate too.
 * ferry's time runs from `POST /api/fs/archive/decompress` until the task has succeeded (seen by
 * polling `info` every 20 ms), after one untimed tiny archive of each format (ferry loads its
 * archive readers on first use). ferry makes the files durable (one `sync -f` of the file system)
 * before the task succeeds; the tools do not, so their time plus a `sync -f` of their output,
 * timed right after, is shown too. Each run extracts into a fresh folder, which
 * is checked (file count, total bytes, one file compared with its source) and then removed. Best
 * of BENCH_RUNS, medians shown; `sync` before every timing, the order alternates. The server's
 * peak RSS is read after the zip runs and again (reset in between) after the tar.gz runs.
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  fmtMB,
  fmtRatio,
  fmtS,
  fmtSize,
  loaderNote,
  log,
  median,
  now,
  type Row,
  remove,
  run,
  type Server,
  startServer,
  syncDisks,
} from './lib.ts';

const BENCH = 'extract';
const RUN_MS = 900_000;
const PER_FOLDER = 100;

/** `files` files of `fileBytes` random bytes each (fresh data per file), 100 per folder. */
async function makeTree(dir: string, files: number, fileBytes: number): Promise<string[]> {
  const paths: string[] = [];
  for (let leaf = 0; leaf * PER_FOLDER < files; leaf++) {
    const leafDir = join(dir, `d${String(Math.floor(leaf / 10)).padStart(2, '0')}`, `e${leaf % 10}`);
    await mkdir(leafDir, { recursive: true });
    for (let f = 0; f < PER_FOLDER && leaf * PER_FOLDER + f < files; f++)
      paths.push(join(leafDir, `f${String(f).padStart(3, '0')}.bin`));
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      const data = Buffer.allocUnsafe(fileBytes);
      while (next < paths.length) {
        const path = paths[next++] as string;
        randomFillSync(data);
        await writeFile(path, data);
      }
    }),
  );
  return paths.map((p) => p.slice(dir.length + 1));
}

/** Regular files below `dir` and their total size. */
async function measure(dir: string): Promise<{ files: number; bytes: number }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  let files = 0;
  let bytes = 0;
  for (const e of entries) {
    if (!e.isFile()) continue;
    files++;
    bytes += (await stat(join(e.parentPath, e.name))).size;
  }
  return { files, bytes };
}

/** One ferry decompress task; resolves with its time from the request to `succeeded`. */
async function ferryDecompress(server: Server, name: string, dstDir: string) {
  const t0 = now();
  const created = await server.ok<{ tasks: { id: string }[] }>('POST', '/api/fs/archive/decompress', {
    src_dir: '/local/archives',
    dst_dir: dstDir,
    name: [name],
    archive_pass: '',
    inner_path: '/',
    cache_full: false,
    put_into_new_dir: false,
    overwrite: false,
  });
  const tid = created.tasks[0]?.id;
  if (!tid) throw new Error('archive/decompress created no task');
  const task = await server.waitTask('decompress', tid, { timeoutMs: RUN_MS, intervalMs: 20 });
  return { ms: now() - t0, task };
}

const all = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ');

export async function extract(root: string): Promise<Row[]> {
  const totalBytes = Number(process.env.BENCH_EXTRACT_BYTES ?? 1024 ** 3);
  const fileCount = Number(process.env.BENCH_EXTRACT_FILES ?? 10_000);
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  const fileBytes = Math.floor(totalBytes / fileCount);
  const bytes = fileBytes * fileCount;
  const dataDir = join(root, 'extract');
  const files = join(dataDir, 'files');
  const archives = join(files, 'archives');
  const srcRoot = join(root, 'extract-src');
  const outDir = join(root, 'extract-out');
  const dirs = [dataDir, srcRoot, outDir];
  for (const dir of [archives, srcRoot, outDir]) await mkdir(dir, { recursive: true });

  log(`${BENCH}: writing ${fileCount} files of ${fileBytes} random bytes (${fmtSize(bytes)})`);
  const names = await makeTree(join(srcRoot, 'tree'), fileCount, fileBytes);
  const sample = names[Math.floor(names.length / 2)] as string;
  log(`${BENCH}: building tree.zip (zip -0) and tree.tar.gz (tar czf), untimed`);
  const zip = join(archives, 'tree.zip');
  const tgz = join(archives, 'tree.tar.gz');
  await run('zip', ['-r', '-q', '-0', zip, 'tree'], { cwd: srcRoot, timeoutMs: RUN_MS });
  await run('tar', ['czf', tgz, 'tree'], { cwd: srcRoot, timeoutMs: RUN_MS });
  // Tiny archives for an untimed first decompress of each format: ferry loads its archive
  // readers on first use, which no timed run should pay for.
  await mkdir(join(srcRoot, 'warm'));
  await writeFile(join(srcRoot, 'warm', 'warm.txt'), 'warm-up\n');
  await run('zip', ['-r', '-q', '-0', join(archives, 'warm.zip'), 'warm'], { cwd: srcRoot });
  await run('tar', ['czf', join(archives, 'warm.tar.gz'), 'warm'], { cwd: srcRoot });
  const zipSize = (await stat(zip)).size;
  const tgzSize = (await stat(tgz)).size;

  const server = await startServer({ dataDir });
  try {
    const idle = await server.memory();
    log(`${BENCH}: server pid ${server.pid} up in ${fmtS(server.startMs)}`);
    for (const warm of ['warm.zip', 'warm.tar.gz']) {
      await ferryDecompress(server, warm, '/local/warm-up');
      await remove(join(files, 'warm-up'));
    }

    const check = async (who: string, dir: string) => {
      const got = await measure(dir);
      if (got.files !== fileCount || got.bytes !== bytes)
        throw new Error(
          `${who}: ${dir} has ${got.files} files of ${got.bytes} bytes, want ${fileCount} of ${bytes}`,
        );
      await run('cmp', [join(srcRoot, 'tree', sample), join(dir, 'tree', sample)]);
      await remove(dir);
    };
    const ferry = (archive: string) => async (i: number) => {
      const dst = `x-ferry-${archive}-${i}`;
      const { ms, task } = await ferryDecompress(server, archive, `/local/${dst}`);
      if (task.failed_files > 0) throw new Error(`ferry: ${task.failed_files} items failed: ${task.error}`);
      await check('ferry', join(files, dst));
      return ms;
    };
    /** The tool's own time, and with a `sync -f` of what it wrote right after. */
    const synced: number[] = [];
    const reference = (command: string, args: (dir: string) => string[]) => async (i: number) => {
      const dir = join(outDir, `${command}-${i}`);
      await mkdir(dir, { recursive: true });
      const { ms } = await run(command, args(dir), { timeoutMs: RUN_MS });
      const flushed = await run('sync', ['-f', dir], { timeoutMs: RUN_MS });
      synced.push(ms + flushed.ms);
      await check(command, dir);
      return ms;
    };

    const compare = async (
      label: string,
      ferryRun: (i: number) => Promise<number>,
      refLabel: string,
      refRun: (i: number) => Promise<number>,
    ) => {
      const times = { ferry: [] as number[], ref: [] as number[], refSynced: [] as number[] };
      synced.length = 0;
      for (let i = 0; i < runs; i++) {
        for (const tool of i % 2 === 0 ? (['ferry', 'ref'] as const) : (['ref', 'ferry'] as const)) {
          await syncDisks();
          const ms = await (tool === 'ferry' ? ferryRun : refRun)(i);
          times[tool].push(ms);
          log(`${BENCH}: ${label} run ${i + 1} ${tool === 'ferry' ? 'ferry' : refLabel} ${fmtS(ms)}`);
        }
      }
      return times;
    };

    const zipTimes = await compare(
      'zip',
      ferry('tree.zip'),
      'unzip',
      reference('unzip', (dir) => ['-q', '-o', zip, '-d', dir]),
    );
    zipTimes.refSynced = [...synced];
    const zipPeak = await server.memory();
    // Each archive's own peak (Linux: `5` > clear_refs resets VmHWM).
    await writeFile(`/proc/${server.pid}/clear_refs`, '5');
    const tgzTimes = await compare(
      'tar.gz',
      ferry('tree.tar.gz'),
      'tar',
      reference('tar', (dir) => ['xzf', tgz, '-C', dir]),
    );
    tgzTimes.refSynced = [...synced];
    const tgzPeak = await server.memory();

    const tree = `${fileCount.toLocaleString('en-US')} files, ${fmtSize(bytes)}`;
    const rate = (ms: number) =>
      `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s, ${Math.round(fileCount / (ms / 1000))} files/s`;
    const rows = (
      what: string,
      times: { ferry: number[]; ref: number[]; refSynced: number[] },
      refLabel: string,
      hwmKb: number,
    ): Row[] => {
      const f = Math.min(...times.ferry);
      const r = Math.min(...times.ref);
      return [
        {
          bench: BENCH,
          figure: `${what}: ferry decompress into /local, best of ${runs} (${all(times.ferry)} s)`,
          value: `${fmtS(f)} (${rate(f)})`,
        },
        {
          bench: BENCH,
          figure: `${what}: ${refLabel}, best of ${runs} (${all(times.ref)} s)`,
          value: `${fmtS(r)} (${rate(r)})`,
        },
        {
          bench: BENCH,
          figure: `${what}: ferry time / ${refLabel.split(' ')[0]} time, best runs (medians: ${fmtRatio(median(times.ferry) / median(times.ref))})`,
          value: '',
          ratio: fmtRatio(f / r),
          goal: '≤ 1.30×',
          met: f / r <= 1.3,
        },
        {
          bench: BENCH,
          figure: `${what}: ferry time / (${refLabel.split(' ')[0]} + sync -f of its output), best runs — ferry syncs, ${refLabel.split(' ')[0]} does not`,
          value: fmtS(Math.min(...times.refSynced)),
          ratio: fmtRatio(f / Math.min(...times.refSynced)),
        },
        {
          bench: BENCH,
          figure: `${what}: server peak RSS during its runs (VmHWM, ${loaderNote()})`,
          value: fmtMB(hwmKb),
        },
      ];
    };
    return [
      ...rows(`zip of ${tree} (zip -0: ${fmtSize(zipSize)})`, zipTimes, 'unzip -q -o', zipPeak.hwmKb),
      ...rows(`tar.gz of the same tree (tar czf: ${fmtSize(tgzSize)})`, tgzTimes, 'tar xzf', tgzPeak.hwmKb),
      { bench: BENCH, figure: 'server RSS right after start (idle)', value: fmtMB(idle.rssKb) },
    ];
  } finally {
    await server.stop();
    for (const dir of dirs) await remove(dir);
  }
}
