/**
 * memory: is the server's memory flat with the size of a transfer? Issue 21's limit: the peak RSS
 * of a 4 GiB transfer is at most 1.1× that of a 1 GiB one, for
 *
 *   s3-up      one random file /local → /s3 (s3rver in its own process) by a copy task
 *   s3-down    the object s3-up just stored, /s3 → /local by a copy task (sha256 checked)
 *   offline    an offline download (SimpleHttp) of the same file from a local nginx into /local
 *
 * Every (transfer, size) run gets a fresh server, so each peak (VmHWM, read once the task has
 * succeeded) is that one transfer's and starts from the same cold process. The sizes alternate
 * (1 GiB first in even rounds, 4 GiB first in odd ones) over BENCH_RUNS rounds, and the medians
 * give the ratio. A sampler also reads /proc/<pid>/smaps_rollup every BENCH_MEMORY_SAMPLE_MS
 * while a transfer runs, to tell anonymous memory (heap, buffers, malloc arenas) from file-backed
 * pages (code, mapped libraries); BENCH_MEMORY_TRACE=<file> appends every sample there as CSV, to
 * see where memory grows during a run; BENCH_MEMORY_IDLE_MS=<ms> keeps each server idle that long
 * after its transfer and logs its RSS then (what it gives back).
 */
import { appendFile, link, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ferryCopy, mountS3, startS3rver } from './drivers.ts';
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
  type Server,
  sha256,
  sleep,
  startServer,
  syncDisks,
  writeRandomFile,
} from './lib.ts';
import { startNginx } from './offline.ts';

const BENCH = 'memory';
const RUN_MS = 900_000;
const GOAL = 1.1;

const TRANSFERS = {
  's3-up': 'copy /local → /s3 (s3rver)',
  's3-down': 'copy /s3 → /local',
  offline: 'offline download (SimpleHttp) from nginx into /local',
} as const;
type Transfer = keyof typeof TRANSFERS;

/** The fields of /proc/<pid>/smaps_rollup the sampler keeps, in kB. */
interface Sample {
  rssKb: number;
  anonKb: number;
  fileKb: number;
}

async function rollup(pid: number): Promise<Sample> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  const rssKb = field('Rss');
  const anonKb = field('Anonymous');
  return { rssKb, anonKb, fileKb: rssKb - anonKb };
}

/**
 * Read smaps_rollup every `intervalMs` until stopped; keeps the sample with the most RSS and the
 * most anonymous memory seen. VmHWM stays the figure of record: a sampler can miss a short peak.
 */
function sampler(pid: number, label: string, intervalMs: number, trace: string | undefined) {
  const peak: Sample = { rssKb: 0, anonKb: 0, fileKb: 0 };
  const t0 = now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const s = await rollup(pid).catch(() => null);
      if (s) {
        peak.rssKb = Math.max(peak.rssKb, s.rssKb);
        peak.anonKb = Math.max(peak.anonKb, s.anonKb);
        peak.fileKb = Math.max(peak.fileKb, s.fileKb);
        if (trace)
          await appendFile(
            trace,
            `${label},${((now() - t0) / 1000).toFixed(2)},${s.rssKb},${s.anonKb},${s.fileKb}\n`,
          );
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop(): Promise<Sample> {
      stopped = true;
      await loop;
      return peak;
    },
  };
}

/** One offline download; resolves once its transfer task placed the file. */
async function download(server: Server, url: string, dstDir: string): Promise<void> {
  const created = await server.ok<{ tasks: { id: string }[] }>('POST', '/api/fs/add_offline_download', {
    urls: [url],
    path: dstDir,
    tool: 'SimpleHttp',
    delete_policy: 'delete_on_upload_succeed',
  });
  const tid = created.tasks[0]?.id;
  if (!tid) throw new Error('add_offline_download created no task');
  await server.waitTask('offline_download', tid, { timeoutMs: RUN_MS, intervalMs: 100 });
  await server.waitTask('offline_download_transfer', `${tid}-t0`, { timeoutMs: RUN_MS, intervalMs: 100 });
}

interface Measure {
  hwmKb: number;
  idleKb: number;
  sampled: Sample;
  ms: number;
}

export async function memoryBench(root: string): Promise<Row[]> {
  const runs = Number(process.env.BENCH_RUNS ?? 2);
  const small = Number(process.env.BENCH_MEMORY_SMALL_BYTES ?? 1024 ** 3);
  const large = Number(process.env.BENCH_MEMORY_LARGE_BYTES ?? 4 * 1024 ** 3);
  const intervalMs = Number(process.env.BENCH_MEMORY_SAMPLE_MS ?? 200);
  const trace = process.env.BENCH_MEMORY_TRACE;
  const idleMs = Number(process.env.BENCH_MEMORY_IDLE_MS ?? 0);
  const picked = process.env.BENCH_MEMORY_TRANSFERS?.split(',').map((s) => s.trim());
  const transfers = (Object.keys(TRANSFERS) as Transfer[]).filter((t) => !picked || picked.includes(t));
  if (picked?.some((p) => !(p in TRANSFERS)))
    throw new Error(`BENCH_MEMORY_TRANSFERS: one or more of ${Object.keys(TRANSFERS).join(', ')}`);
  if (transfers.includes('s3-down') && !transfers.includes('s3-up'))
    throw new Error('BENCH_MEMORY_TRANSFERS: s3-down downloads what s3-up uploaded; pick both');

  const www = join(root, 'memory-www');
  const s3Dir = join(root, 'memory-s3rver');
  const nginxDir = join(root, 'memory-nginx');
  const dirs = [www, s3Dir, nginxDir];
  for (const dir of dirs) await mkdir(dir, { recursive: true });
  const sizes = [small, large];
  const fileOf = (bytes: number) => `src-${bytes}.bin`;
  const hashes = new Map<number, string>();
  for (const bytes of sizes) {
    log(`${BENCH}: writing ${fmtSize(bytes)} of random data`);
    const path = join(www, fileOf(bytes));
    await writeRandomFile(path, bytes);
    hashes.set(bytes, await sha256(path));
  }
  const s3 = transfers.includes('s3-up') ? await startS3rver(s3Dir) : null;
  const nginx = transfers.includes('offline') ? await startNginx(nginxDir, www) : null;

  const results = new Map<string, Measure[]>();
  const key = (t: Transfer, bytes: number) => `${t} ${bytes}`;
  let serial = 0;

  /** A fresh server, the transfer, its peak; the server and its data directory go afterwards. */
  async function measure(transfer: Transfer, bytes: number, round: number): Promise<void> {
    const dataDir = join(root, `memory-server-${serial++}`);
    const name = fileOf(bytes);
    await mkdir(join(dataDir, 'files', 'src'), { recursive: true });
    // The server's /local sees the source through a hard link: same bytes, no copy.
    if (transfer === 's3-up') await link(join(www, name), join(dataDir, 'files', 'src', name));
    const server = await startServer({ dataDir });
    try {
      if (s3) await mountS3(server, s3.endpoint, '/memory');
      const idle = await server.memory();
      await syncDisks();
      const sampling = sampler(server.pid, `${transfer},${bytes},${round}`, intervalMs, trace);
      const t0 = now();
      let out: string | null = null;
      let sampled: Sample;
      let ms = 0;
      try {
        if (transfer === 's3-up') {
          await ferryCopy(server, '/local/src', name, `/s3/r${round}`, 100);
        } else if (transfer === 's3-down') {
          await ferryCopy(server, `/s3/r${round}`, name, '/local/down', 100);
          out = join(dataDir, 'files', 'down', name);
        } else {
          await download(server, `${nginx?.origin}/${name}`, '/local/dl');
          out = join(dataDir, 'files', 'dl', name);
        }
        ms = now() - t0;
      } finally {
        sampled = await sampling.stop();
      }
      const { hwmKb } = await server.memory();
      // BENCH_MEMORY_IDLE_MS: whether an idle server gives any of its peak back (garbage left in
      // V8's old generation goes only with a mark-compact, which idleness may or may not bring).
      let afterKb: number | null = null;
      if (idleMs > 0) {
        await sleep(idleMs);
        afterKb = (await server.memory()).rssKb;
      }
      if (transfer === 's3-up') {
        const size = (
          await server.ok<{ size: number }>('POST', '/api/fs/get', { path: `/s3/r${round}/${name}` })
        ).size;
        if (size !== bytes) throw new Error(`s3-up: /s3/r${round}/${name} has ${size} bytes, want ${bytes}`);
      } else if (out) {
        const size = (await stat(out)).size;
        if (size !== bytes) throw new Error(`${transfer}: ${out} has ${size} bytes, want ${bytes}`);
        if (round === 0 && (await sha256(out)) !== hashes.get(bytes))
          throw new Error(`${transfer}: ${out} differs from the source`);
      }
      // s3-down was the object's last reader: the bucket is emptied for the next round.
      if (transfer === 's3-down')
        await server.ok('POST', '/api/fs/remove', { dir: '/s3', names: [`r${round}`] });
      const list = results.get(key(transfer, bytes)) ?? [];
      list.push({ hwmKb, idleKb: idle.rssKb, sampled, ms });
      results.set(key(transfer, bytes), list);
      log(
        `${BENCH}: round ${round + 1} ${transfer} ${fmtSize(bytes)} in ${fmtS(ms)}: peak ${fmtMB(hwmKb)} ` +
          `(idle ${fmtMB(idle.rssKb)}; sampled max anon ${fmtMB(sampled.anonKb)}, file ${fmtMB(sampled.fileKb)})` +
          (afterKb === null ? '' : `; RSS ${fmtMB(afterKb)} after ${fmtS(idleMs)} idle`),
      );
    } finally {
      await server.stop();
      await remove(dataDir);
    }
  }

  try {
    for (let round = 0; round < runs; round++) {
      for (const bytes of round % 2 === 0 ? sizes : [...sizes].reverse())
        for (const transfer of transfers) await measure(transfer, bytes, round);
    }
  } finally {
    await nginx?.stop();
    await s3?.stop();
    for (const dir of dirs) await remove(dir);
  }

  const mb = (kb: number[]) => kb.map((k) => fmtMB(k).replace(' MB', '')).join(', ');
  const rows: Row[] = [];
  for (const transfer of transfers) {
    const medians: number[] = [];
    for (const bytes of sizes) {
      const list = results.get(key(transfer, bytes)) ?? [];
      const peak = median(list.map((m) => m.hwmKb));
      medians.push(peak);
      rows.push({
        bench: BENCH,
        figure:
          `${transfer}: ${TRANSFERS[transfer]}, ${fmtSize(bytes)}, fresh server: peak RSS (VmHWM, ${loaderNote()}), ` +
          `median of ${list.length} (${mb(list.map((m) => m.hwmKb))} MB; idle ${mb(list.map((m) => m.idleKb))} MB; ` +
          `sampled max anonymous ${mb(list.map((m) => m.sampled.anonKb))} MB, file-backed ` +
          `${mb(list.map((m) => m.sampled.fileKb))} MB; ${list.map((m) => (m.ms / 1000).toFixed(1)).join(', ')} s)`,
        value: fmtMB(peak),
      });
    }
    const ratio = (medians[1] as number) / (medians[0] as number);
    rows.push({
      bench: BENCH,
      figure: `${transfer}: peak RSS of ${fmtSize(large)} / ${fmtSize(small)}, medians`,
      value: '',
      ratio: fmtRatio(ratio),
      goal: `≤ ${fmtRatio(GOAL)}`,
      met: ratio <= GOAL,
    });
  }
  return rows;
}
