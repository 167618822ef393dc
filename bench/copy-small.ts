/**
 * copy-small: a nested tree of many small files copied by one ferry copy task, against `cp -r`
 * and `rclone copy --transfers 8` of the same tree, each into a fresh destination. `sync` before
 * every timing; the order rotates between runs. The default ferry flushes the copy before its
 * task succeeds and is compared with the tools plus a `sync -f` of their output; a second server
 * with FERRY_SYNC_FILES=false leaves that to the kernel, as the tools do, and is compared with
 * them alone.
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  fmtMB,
  fmtRatio,
  fmtS,
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

const BENCH = 'copy-small';

/** 10 × 10 folders of 100 files: 10,000 files by default. */
async function makeTree(dir: string, files: number, fileBytes: number): Promise<void> {
  const perLeaf = 100;
  const leaves = Math.ceil(files / perLeaf);
  const random = Buffer.allocUnsafe(fileBytes * 1024);
  randomFillSync(random);
  const jobs: { path: string; data: Buffer }[] = [];
  for (let leaf = 0; leaf < leaves; leaf++) {
    const leafDir = join(dir, `d${String(Math.floor(leaf / 10)).padStart(2, '0')}`, `e${leaf % 10}`);
    await mkdir(leafDir, { recursive: true });
    for (let f = 0; f < perLeaf && leaf * perLeaf + f < files; f++) {
      const n = leaf * perLeaf + f;
      const offset = (n * 7919) % (random.length - fileBytes);
      jobs.push({
        path: join(leafDir, `f${String(f).padStart(3, '0')}.bin`),
        data: random.subarray(offset, offset + fileBytes),
      });
    }
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++];
        if (job) await writeFile(job.path, job.data);
      }
    }),
  );
}

async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).length;
}

export async function copySmall(root: string): Promise<Row[]> {
  const fileCount = Number(process.env.BENCH_SMALL_FILES ?? 10_000);
  const fileBytes = Number(process.env.BENCH_SMALL_BYTES ?? 4096);
  const runs = Number(process.env.BENCH_RUNS ?? 4);
  const dataDir = join(root, 'copy-small');
  const files = join(dataDir, 'files');
  const src = join(files, 'small', 'tree');
  log(`${BENCH}: writing ${fileCount} files of ${fileBytes} bytes`);
  await makeTree(src, fileCount, fileBytes);
  await mkdir(join(files, 'out'), { recursive: true });
  // The unflushed server's source: the same files, hard-linked.
  const unflushedDir = join(root, 'copy-small-unflushed');
  await mkdir(join(unflushedDir, 'files', 'small'), { recursive: true });
  await run('cp', ['-al', src, join(unflushedDir, 'files', 'small', 'tree')], { timeoutMs: 600_000 });

  const servers: Server[] = [];
  try {
    const server = await startServer({ dataDir });
    servers.push(server);
    const unflushed = await startServer({ dataDir: unflushedDir, env: { FERRY_SYNC_FILES: 'false' } });
    servers.push(unflushed);
    log(`${BENCH}: servers up (pids ${server.pid}, ${unflushed.pid})`);
    const times: Record<'ferry' | 'unflushed' | 'cp' | 'rclone', number[]> = {
      ferry: [],
      unflushed: [],
      cp: [],
      rclone: [],
    };
    // ferry makes the copy durable (one `sync -f`) before its task succeeds; cp and rclone do
    // not. Their time plus a `sync -f` of their output, timed right after, is the comparable one.
    const synced: Record<'cp' | 'rclone', number[]> = { cp: [], rclone: [] };
    const flushed = async (tool: 'cp' | 'rclone', ms: number, dst: string) => {
      synced[tool].push(ms + (await run('sync', ['-f', dst], { timeoutMs: 600_000 })).ms);
    };
    const check = async (dir: string, who: string) => {
      const n = await countFiles(dir);
      if (n !== fileCount) throw new Error(`${who} copied ${n} files, want ${fileCount}`);
    };

    const ferryCopy = (on: Server, onDir: string, who: string) => async (i: number) => {
      const t0 = now();
      const created = await on.ok<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
        src_dir: '/local/small',
        dst_dir: `/local/out/ferry-${i}`,
        names: ['tree'],
      });
      const tid = created.tasks[0]?.id;
      if (!tid) throw new Error('fs/copy created no task');
      const task = await on.waitTask('copy', tid, { timeoutMs: 600_000, intervalMs: 20 });
      const ms = now() - t0;
      if (task.processed_files !== fileCount)
        throw new Error(`${who} task reports ${task.processed_files} files, want ${fileCount}`);
      await check(join(onDir, 'files', 'out', `ferry-${i}`, 'tree'), who);
      return ms;
    };
    const tools: Record<keyof typeof times, (i: number) => Promise<number>> = {
      ferry: ferryCopy(server, dataDir, 'ferry'),
      unflushed: ferryCopy(unflushed, unflushedDir, 'ferry with syncFiles false'),
      cp: async (i) => {
        const dst = join(files, 'out', `cp-${i}`);
        const { ms } = await run('cp', ['-r', src, dst], { timeoutMs: 600_000 });
        await flushed('cp', ms, dst);
        await check(dst, 'cp -r');
        return ms;
      },
      rclone: async (i) => {
        const dst = join(files, 'out', `rclone-${i}`);
        const { ms } = await run('rclone', ['copy', src, dst, '--transfers', '8'], {
          timeoutMs: 600_000,
          env: { ...process.env, RCLONE_CONFIG: '/dev/null' },
        });
        await flushed('rclone', ms, dst);
        await check(dst, 'rclone');
        return ms;
      },
    };

    const order = Object.keys(tools) as (keyof typeof times)[];
    for (let i = 0; i < runs; i++) {
      const rotated = [...order.slice(i % order.length), ...order.slice(0, i % order.length)];
      for (const tool of rotated) {
        await syncDisks();
        const ms = await tools[tool](i);
        times[tool].push(ms);
        log(`${BENCH}: run ${i + 1} ${tool} ${fmtS(ms)}`);
        // Destinations stay until the end: on this VM, creating files right after deleting many
        // is several times slower (cp -r of the same tree: 0.4 s, then 3.7, 6.8, 9.5 s with an
        // rm -rf before each), which would punish whichever tool runs after a clean-up.
      }
    }
    const mem = await server.memory();
    // Best run as the ratios' basis (timings on this VM are bimodal), medians beside them.
    const ferry = Math.min(...times.ferry);
    const ferryUnflushed = Math.min(...times.unflushed);
    const rcloneSynced = Math.min(...synced.rclone);
    const cp = Math.min(...times.cp);
    const rclone = Math.min(...times.rclone);
    const medians = (a: number[], b: number[]) => fmtRatio(median(a) / median(b));
    const all = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ');
    const perSec = (ms: number) => `${Math.round(fileCount / (ms / 1000))} files/s`;
    const label = `${fileCount.toLocaleString('en-US')} × ${fileBytes / 1024} KiB`;
    return [
      {
        bench: BENCH,
        figure: `ferry copy of ${label} as one task (default: flushed), best of ${runs} (${all(times.ferry)} s)`,
        value: `${fmtS(ferry)} (${perSec(ferry)})`,
      },
      {
        bench: BENCH,
        figure: `ferry copy, FERRY_SYNC_FILES=false (left to the kernel), best of ${runs} (${all(times.unflushed)} s)`,
        value: `${fmtS(ferryUnflushed)} (${perSec(ferryUnflushed)})`,
      },
      {
        bench: BENCH,
        figure: `cp -r, best of ${runs} (${all(times.cp)} s)`,
        value: `${fmtS(cp)} (${perSec(cp)})`,
      },
      {
        bench: BENCH,
        figure: `rclone copy --transfers 8, best of ${runs} (${all(times.rclone)} s)`,
        value: `${fmtS(rclone)} (${perSec(rclone)})`,
      },
      {
        bench: BENCH,
        figure: `ferry time / cp -r time, best runs (medians: ${medians(times.ferry, times.cp)})`,
        value: '',
        ratio: fmtRatio(ferry / cp),
      },
      {
        bench: BENCH,
        figure: `ferry (default) / (rclone + sync -f of its output) — both flushed; best runs (medians: ${medians(times.ferry, synced.rclone)})`,
        value: fmtS(rcloneSynced),
        ratio: fmtRatio(ferry / rcloneSynced),
        goal: '< 1.00× (faster than rclone)',
        met: ferry < rcloneSynced,
      },
      {
        bench: BENCH,
        figure: `ferry (FERRY_SYNC_FILES=false) / rclone — neither flushes; best runs (medians: ${medians(times.unflushed, times.rclone)})`,
        value: '',
        ratio: fmtRatio(ferryUnflushed / rclone),
        goal: '< 1.00× (faster than rclone)',
        met: ferryUnflushed < rclone,
      },
      {
        bench: BENCH,
        figure: `ferry (default, flushed) / rclone (not flushed), best runs (medians: ${medians(times.ferry, times.rclone)})`,
        value: '',
        ratio: fmtRatio(ferry / rclone),
      },
      {
        bench: BENCH,
        figure: `ferry (default) / (cp -r + sync -f of its output), best runs`,
        value: fmtS(Math.min(...synced.cp)),
        ratio: fmtRatio(ferry / Math.min(...synced.cp)),
      },
      { bench: BENCH, figure: `server peak RSS (VmHWM, ${loaderNote()})`, value: fmtMB(mem.hwmKb) },
    ];
  } finally {
    for (const server of servers) await server.stop();
    await remove(dataDir);
    await remove(unflushedDir);
  }
}
