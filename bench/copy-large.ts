/**
 * copy-large: one big random file copied Local → Local by a ferry copy task, against `cp` of the
 * same file on the same disk. Page cache cannot be dropped (no root assumption), so the source is
 * warm for both; `sync` runs before every timing so no run pays for the previous one's
 * write-back, and the order alternates between runs.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  fmtMB,
  fmtRatio,
  fmtS,
  loaderNote,
  log,
  mbOf,
  median,
  now,
  type Row,
  remove,
  run,
  startServer,
  syncDisks,
  writeRandomFile,
} from './lib.ts';

const BENCH = 'copy-large';

export async function copyLarge(root: string): Promise<Row[]> {
  const bytes = Number(process.env.BENCH_LARGE_BYTES ?? 2 * 1024 ** 3);
  const runs = Number(process.env.BENCH_RUNS ?? 5);
  const dataDir = join(root, 'copy-large');
  const files = join(dataDir, 'files');
  await mkdir(join(files, 'big'), { recursive: true });
  const src = join(files, 'big', 'src.bin');
  log(`${BENCH}: writing ${(bytes / 1024 ** 3).toFixed(2)} GiB of random data`);
  await writeRandomFile(src, bytes);

  const server = await startServer({ dataDir });
  try {
    const idle = await server.memory();
    log(`${BENCH}: server pid ${server.pid} up in ${fmtS(server.startMs)}, idle RSS ${fmtMB(idle.rssKb)}`);
    const ferryMs: number[] = [];
    const cpMs: number[] = [];
    const cpSyncMs: number[] = [];

    const timeFerry = async (i: number) => {
      const dstDir = `/local/out-ferry-${i}`;
      await syncDisks();
      const t0 = now();
      const created = await server.ok<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        src_dir: '/local/big',
        dst_dir: dstDir,
        names: ['src.bin'],
      });
      const tid = created.tasks[0]?.id;
      if (!tid) throw new Error('fs/copy created no task');
      const task = await server.waitTask('copy', tid, { timeoutMs: 600_000, intervalMs: 20 });
      const ms = now() - t0;
      const out = join(files, `out-ferry-${i}`, 'src.bin');
      const size = (await stat(out)).size;
      if (size !== bytes || task.processed_bytes !== bytes)
        throw new Error(`ferry copy has ${size} bytes (task says ${task.processed_bytes}), want ${bytes}`);
      if (i === 0) {
        // Once: the bytes are the same, not just the size.
        await run('cmp', [src, out], { timeoutMs: 300_000 });
      }
      await remove(join(files, `out-ferry-${i}`));
      ferryMs.push(ms);
      log(`${BENCH}: run ${i + 1} ferry ${fmtS(ms)}`);
    };
    const timeCp = async (i: number) => {
      const out = join(files, `out-cp-${i}.bin`);
      await syncDisks();
      const { ms } = await run('cp', [src, out], { timeoutMs: 600_000 });
      // ferry fsyncs what it wrote before the task succeeds; cp does not. Flushing only this file
      // right after cp gives the comparable "cp + fsync" figure.
      const flushed = await run('sync', [out], { timeoutMs: 300_000 });
      await remove(out);
      cpMs.push(ms);
      cpSyncMs.push(ms + flushed.ms);
      log(`${BENCH}: run ${i + 1} cp ${fmtS(ms)} (+ fsync ${fmtS(flushed.ms)})`);
    };

    for (let i = 0; i < runs; i++) {
      if (i % 2 === 0) {
        await timeFerry(i);
        await timeCp(i);
      } else {
        await timeCp(i);
        await timeFerry(i);
      }
    }
    const mem = await server.memory();
    // This VM's page cache and memory reclaim make single timings bimodal (the same copy takes
    // 1× or 2–3× as long): the best run is the ratio's basis, the median is shown beside it.
    const ferry = Math.min(...ferryMs);
    const cp = Math.min(...cpMs);
    const cpSync = Math.min(...cpSyncMs);
    const ratio = ferry / cp;
    const medianRatio = median(ferryMs) / median(cpMs);
    const gib = bytes / 1024 ** 3;
    const rate = (ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
    const all = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ');
    return [
      {
        bench: BENCH,
        figure: `ferry copy of ${gib.toFixed(0)} GiB, best of ${runs} (${all(ferryMs)} s)`,
        value: `${fmtS(ferry)} (${rate(ferry)})`,
      },
      {
        bench: BENCH,
        figure: `cp, best of ${runs} (${all(cpMs)} s)`,
        value: `${fmtS(cp)} (${rate(cp)})`,
      },
      {
        bench: BENCH,
        figure: `ferry time / cp time, best runs (medians: ${fmtRatio(medianRatio)})`,
        value: '',
        ratio: fmtRatio(ratio),
        goal: '≤ 1.10×',
        met: ratio <= 1.1,
      },
      {
        bench: BENCH,
        figure: 'ferry time / (cp + fsync of the copy), best runs — ferry fsyncs, cp does not',
        value: fmtS(cpSync),
        ratio: fmtRatio(ferry / cpSync),
      },
      {
        bench: BENCH,
        figure: `server peak RSS (VmHWM, ${loaderNote()})`,
        value: fmtMB(mem.hwmKb),
        goal: '≤ 150 MB',
        met: mbOf(mem.hwmKb) <= 150,
      },
      { bench: BENCH, figure: 'server RSS right after start (idle)', value: fmtMB(idle.rssKb) },
    ];
  } finally {
    await server.stop();
    await remove(dataDir);
  }
}
