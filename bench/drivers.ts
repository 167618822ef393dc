/**
 * drivers: ferry's remote storage drivers against rclone between the same two endpoints, in the
 * same run. The servers are real and local: s3rver in its own node process (so its CPU is not
 * charged to this runner's event loop) and `rclone serve webdav`, both on loopback.
 *
 *   s3-up      one big random file /local → /s3 by a ferry copy task vs `rclone copy` to the same
 *              bucket (rclone's defaults: multipart above 200 MiB, 5 MiB parts, 4 at a time, and
 *              an MD5 pass over the source first for its metadata)
 *   s3-down    the object ferry uploaded first, /s3 → /local vs `rclone copy` of the same object
 *   dav-small  a tree of small files /local → /dav as one copy task vs `rclone copy --transfers 8`
 *
 * Best of BENCH_RUNS for the ratios, medians beside them; `sync` before every timing, the order
 * alternates between runs. Both sides are checked (sizes, file counts, sha256 of the first
 * downloads) so a fast wrong copy cannot win. The server's peak RSS is read after the S3 runs.
 */
import { randomFillSync } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import {
  countFiles,
  errorText,
  fmtMB,
  fmtRatio,
  fmtS,
  freePort,
  loaderNote,
  log,
  median,
  now,
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

const BENCH = 'drivers';
export const BUCKET = 'ferry-bench';
const DAV_USER = 'u';
const DAV_PASS = 'p';
const RUN_MS = 900_000;

// ---------------------------------------------------------------------------------------------
// The servers ferry and rclone talk to

/** Mount the s3rver bucket at `/s3` of `server`, below `folder` of the bucket. */
export async function mountS3(server: Server, endpoint: string, folder: string): Promise<void> {
  await server.ok('POST', '/api/admin/storage/create', {
    mount_path: '/s3',
    driver: 'S3',
    addition: JSON.stringify({
      bucket: BUCKET,
      endpoint,
      region: 'us-east-1',
      access_key_id: 'S3RVER',
      secret_access_key: 'S3RVER',
      force_path_style: true,
      root_folder_path: folder,
    }),
  });
}

/** s3rver in a child process (test/helpers/s3rver-child.ts); resolves once it printed its port. */
export async function startS3rver(directory: string): Promise<Service & { endpoint: string }> {
  // --openssl-legacy-provider: s3rver's continuation tokens use DES (see test/helpers/s3-server.ts).
  const s3 = service(process.execPath, [
    '--openssl-legacy-provider',
    '--import',
    'tsx',
    'test/helpers/s3rver-child.ts',
    directory,
    BUCKET,
  ]);
  const port = await withTimeout('s3rver start-up', 60_000, async () => {
    for (;;) {
      const found = /^port (\d+)$/m.exec(s3.output());
      if (found) return Number(found[1]);
      if (s3.child.exitCode !== null) throw new Error(`s3rver exited: ${s3.output()}`);
      await sleep(50);
    }
  });
  return { ...s3, endpoint: `http://127.0.0.1:${port}` };
}

/** `rclone serve webdav` over `root` (flags as test/helpers/rclone.ts); resolves once it listens. */
async function startWebDav(root: string, cacheDir: string): Promise<Service & { address: string }> {
  const port = await freePort();
  const args = [
    'serve',
    'webdav',
    root,
    '--addr',
    `127.0.0.1:${port}`,
    '--user',
    DAV_USER,
    '--pass',
    DAV_PASS,
  ];
  const dav = service('rclone', [
    ...args,
    '--config',
    '/dev/null',
    '--cache-dir',
    cacheDir,
    '--log-level',
    'ERROR',
  ]);
  await withTimeout('rclone serve webdav start-up', 15_000, async () => {
    for (;;) {
      if (dav.child.exitCode !== null) throw new Error(`rclone serve webdav exited: ${dav.output()}`);
      const open = await new Promise<boolean>((r) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          r(true);
        });
        socket.once('error', () => r(false));
      });
      if (open) return;
      await sleep(50);
    }
  });
  return { ...dav, address: `http://127.0.0.1:${port}` };
}

/** An rclone on-the-fly remote (`:type,key='value',…:`); values quoted, quotes doubled. */
function remote(type: string, params: Record<string, string>): string {
  const kv = Object.entries(params).map(([k, v]) => `${k}='${v.replaceAll("'", "''")}'`);
  return `:${type},${kv.join(',')}:`;
}

/** rclone runs without any config and without AWS_* from this environment: Debian's rclone 1.60
 * fails every S3 request with LoadCustomCABundleError when AWS_CA_BUNDLE is set. */
function rclone(args: string[]): Promise<{ ms: number; stdout: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('AWS_') && !k.startsWith('RCLONE_')) env[k] = v;
  return run('rclone', [...args, '--config', '/dev/null'], { timeoutMs: RUN_MS, env });
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Same layout as copy-small: 10 × 10 folders of 100 files (10,000 files by default). */
async function makeTree(dir: string, files: number, fileBytes: number): Promise<void> {
  const random = Buffer.allocUnsafe(fileBytes * 1024);
  randomFillSync(random);
  const jobs: { path: string; data: Buffer }[] = [];
  for (let leaf = 0; leaf * 100 < files; leaf++) {
    const leafDir = join(dir, `d${String(Math.floor(leaf / 10)).padStart(2, '0')}`, `e${leaf % 10}`);
    await mkdir(leafDir, { recursive: true });
    for (let f = 0; f < 100 && leaf * 100 + f < files; f++) {
      const offset = ((leaf * 100 + f) * 7919) % (random.length - fileBytes);
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

/**
 * One ferry copy task; resolves with its time from the request to `succeeded` seen by polling
 * every `intervalMs` (short for a timing; the memory bench polls less, not to add to what it measures).
 */
export async function ferryCopy(
  server: Server,
  srcDir: string,
  name: string,
  dstDir: string,
  intervalMs = 20,
) {
  const t0 = now();
  const created = await server.ok<{ tasks: { id: string }[] }>('POST', '/api/fs/copy', {
    src_dir: srcDir,
    dst_dir: dstDir,
    names: [name],
  });
  const tid = created.tasks[0]?.id;
  if (!tid) throw new Error('fs/copy created no task');
  const task = await server.waitTask('copy', tid, { timeoutMs: RUN_MS, intervalMs });
  return { ms: now() - t0, task };
}

async function sizeOf(server: Server, path: string): Promise<number> {
  return (await server.ok<{ size: number }>('POST', '/api/fs/get', { path })).size;
}

const all = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ');

/** The rows of one ferry-vs-rclone comparison: both timings and the ratio of the best runs. */
function compare(
  name: string,
  what: string,
  ferryMs: number[],
  rcloneMs: number[],
  rate: (ms: number) => string,
  rcloneLabel = 'rclone copy',
): Row[] {
  const ferry = Math.min(...ferryMs);
  const rc = Math.min(...rcloneMs);
  const runs = ferryMs.length;
  return [
    {
      bench: BENCH,
      figure: `${name}: ferry ${what}, best of ${runs} (${all(ferryMs)} s)`,
      value: `${fmtS(ferry)} (${rate(ferry)})`,
    },
    {
      bench: BENCH,
      figure: `${name}: ${rcloneLabel}, best of ${runs} (${all(rcloneMs)} s)`,
      value: `${fmtS(rc)} (${rate(rc)})`,
    },
    {
      bench: BENCH,
      figure: `${name}: ferry time / rclone time, best runs (medians: ${fmtRatio(median(ferryMs) / median(rcloneMs))})`,
      value: '',
      ratio: fmtRatio(ferry / rc),
      goal: '≤ 1.10×',
      met: ferry / rc <= 1.1,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// The benchmarks

function peakRow(what: string, hwmKb: number): Row {
  return {
    bench: BENCH,
    figure: `${what}: server peak RSS during its runs (VmHWM, ${loaderNote()})`,
    value: fmtMB(hwmKb),
  };
}

async function s3Bench(
  server: Server,
  endpoint: string,
  files: string,
  outDir: string,
  runs: number,
): Promise<Row[]> {
  const bytes = Number(process.env.BENCH_S3_BYTES ?? 1024 ** 3);
  const src = join(files, 'big', 'src.bin');
  await mkdir(join(files, 'big'), { recursive: true });
  log(`${BENCH}: writing ${(bytes / 1024 ** 3).toFixed(2)} GiB of random data`);
  await writeRandomFile(src, bytes);
  const srcHash = await sha256(src);
  const s3 = remote('s3', {
    provider: 'Other',
    endpoint,
    access_key_id: 'S3RVER',
    secret_access_key: 'S3RVER',
    force_path_style: 'true',
  });
  const rate = (ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  const expect = (what: string, size: number) => {
    if (size !== bytes) throw new Error(`${what} has ${size} bytes, want ${bytes}`);
  };
  const alternate = async (i: number, a: () => Promise<void>, b: () => Promise<void>) => {
    if (i % 2 === 0) {
      await a();
      await b();
    } else {
      await b();
      await a();
    }
  };

  const up = { ferry: [] as number[], rclone: [] as number[] };
  for (let i = 0; i < runs; i++) {
    await alternate(
      i,
      async () => {
        await syncDisks();
        const { ms, task } = await ferryCopy(server, '/local/big', 'src.bin', `/s3/up${i}`);
        expect(
          `ferry's task (${task.processed_bytes} processed) /s3/up${i}/src.bin`,
          await sizeOf(server, `/s3/up${i}/src.bin`),
        );
        up.ferry.push(ms);
        log(`${BENCH}: s3-up run ${i + 1} ferry ${fmtS(ms)}`);
      },
      async () => {
        await syncDisks();
        const { ms } = await rclone(['copy', src, `${s3}${BUCKET}/bench/rclone-up${i}`]);
        expect(`rclone's /s3/rclone-up${i}/src.bin`, await sizeOf(server, `/s3/rclone-up${i}/src.bin`));
        up.rclone.push(ms);
        log(`${BENCH}: s3-up run ${i + 1} rclone ${fmtS(ms)}`);
      },
    );
    // /s3/up0 stays: it is what both download below.
    await server.ok('POST', '/api/fs/remove', {
      dir: '/s3',
      names: [`rclone-up${i}`, ...(i > 0 ? [`up${i}`] : [])],
    });
  }

  // Each direction's own peak: read after the uploads, then reset (Linux: `5` > clear_refs).
  const upPeak = await server.memory();
  await writeFile(`/proc/${server.pid}/clear_refs`, '5');
  const down = { ferry: [] as number[], rclone: [] as number[], rcloneSync: [] as number[] };
  for (let i = 0; i < runs; i++) {
    await alternate(
      i,
      async () => {
        await syncDisks();
        const { ms } = await ferryCopy(server, '/s3/up0', 'src.bin', `/local/down-ferry-${i}`);
        const out = join(files, `down-ferry-${i}`, 'src.bin');
        expect(`ferry's download ${out}`, (await stat(out)).size);
        if (i === 0 && (await sha256(out)) !== srcHash)
          throw new Error(`ferry's download ${out} differs from the source`);
        await remove(join(files, `down-ferry-${i}`));
        down.ferry.push(ms);
        log(`${BENCH}: s3-down run ${i + 1} ferry ${fmtS(ms)}`);
      },
      async () => {
        await syncDisks();
        const dir = join(outDir, `down-rclone-${i}`);
        const { ms } = await rclone(['copy', `${s3}${BUCKET}/bench/up0/src.bin`, dir]);
        const out = join(dir, 'src.bin');
        // ferry fsyncs what it wrote before the task succeeds; rclone does not.
        const flushed = await run('sync', [out], { timeoutMs: RUN_MS });
        expect(`rclone's download ${out}`, (await stat(out)).size);
        if (i === 0 && (await sha256(out)) !== srcHash)
          throw new Error(`rclone's download ${out} differs from the source`);
        await remove(dir);
        down.rclone.push(ms);
        down.rcloneSync.push(ms + flushed.ms);
        log(`${BENCH}: s3-down run ${i + 1} rclone ${fmtS(ms)} (+ fsync ${fmtS(flushed.ms)})`);
      },
    );
  }
  const gib = `${(bytes / 1024 ** 3).toFixed(bytes < 1024 ** 3 ? 2 : 0)} GiB`;
  const downPeak = await server.memory();
  const ferryDown = Math.min(...down.ferry);
  const rcloneSync = Math.min(...down.rcloneSync);
  return [
    ...compare('s3-up', `copy of ${gib} /local → /s3 (s3rver)`, up.ferry, up.rclone, rate),
    ...compare('s3-down', `copy of ${gib} /s3 → /local (sha256 checked)`, down.ferry, down.rclone, rate),
    {
      bench: BENCH,
      figure: 's3-down: ferry time / (rclone + fsync of the file), best runs — ferry fsyncs, rclone does not',
      value: fmtS(rcloneSync),
      ratio: fmtRatio(ferryDown / rcloneSync),
    },
    peakRow('s3-up', upPeak.hwmKb),
    peakRow('s3-down', downPeak.hwmKb),
  ];
}

async function davBench(
  server: Server,
  address: string,
  files: string,
  davRoot: string,
  runs: number,
): Promise<Row[]> {
  const fileCount = Number(process.env.BENCH_DAV_FILES ?? 10_000);
  const fileBytes = 4096;
  const src = join(files, 'small', 'tree');
  log(`${BENCH}: writing ${fileCount} files of ${fileBytes} bytes`);
  await makeTree(src, fileCount, fileBytes);
  const dav = remote('webdav', {
    url: address,
    user: DAV_USER,
    pass: (await rclone(['obscure', DAV_PASS])).stdout.trim(),
  });
  const check = async (dir: string, who: string) => {
    const n = await countFiles(dir);
    if (n !== fileCount) throw new Error(`${who} copied ${n} files to ${dir}, want ${fileCount}`);
  };
  const times = { ferry: [] as number[], rclone: [] as number[] };
  const tools = {
    ferry: async (i: number) => {
      const { ms, task } = await ferryCopy(server, '/local/small', 'tree', `/dav/run${i}`);
      if (task.processed_files !== fileCount)
        throw new Error(`ferry task reports ${task.processed_files} files, want ${fileCount}`);
      await check(join(davRoot, `run${i}`, 'tree'), 'ferry');
      return ms;
    },
    rclone: async (i: number) => {
      const { ms } = await rclone(['copy', src, `${dav}rclone-run${i}`, '--transfers', '8']);
      await check(join(davRoot, `rclone-run${i}`), 'rclone');
      return ms;
    },
  };
  for (let i = 0; i < runs; i++) {
    for (const tool of i % 2 === 0 ? (['ferry', 'rclone'] as const) : (['rclone', 'ferry'] as const)) {
      await syncDisks();
      const ms = await tools[tool](i);
      times[tool].push(ms);
      log(`${BENCH}: dav-small run ${i + 1} ${tool} ${fmtS(ms)}`);
      // Destinations stay until the end, as in copy-small (creating files right after deleting
      // many is several times slower on this VM).
    }
  }
  const perSec = (ms: number) => `${Math.round(fileCount / (ms / 1000))} files/s`;
  const label = `${fileCount.toLocaleString('en-US')} × ${fileBytes / 1024} KiB`;
  return compare(
    'dav-small',
    `copy of ${label} /local → /dav (rclone serve webdav) as one task`,
    times.ferry,
    times.rclone,
    perSec,
    'rclone copy --transfers 8',
  );
}

export async function drivers(root: string): Promise<Row[]> {
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  const dataDir = join(root, 'drivers');
  const files = join(dataDir, 'files');
  const s3Dir = join(root, 'drivers-s3rver');
  const davRoot = join(root, 'drivers-webdav');
  const davCache = join(root, 'drivers-rclone-cache');
  const outDir = join(root, 'drivers-out');
  const dirs = [dataDir, s3Dir, davRoot, davCache, outDir];
  for (const dir of dirs) await mkdir(dir, { recursive: true });
  const s3 = await startS3rver(s3Dir);
  const webdav = await startWebDav(davRoot, davCache);
  const server = await startServer({ dataDir });
  try {
    const idle = await server.memory();
    log(
      `${BENCH}: server pid ${server.pid} up in ${fmtS(server.startMs)}, s3rver ${s3.endpoint}, webdav ${webdav.address}`,
    );
    await mountS3(server, s3.endpoint, '/bench');
    const rows = await s3Bench(server, s3.endpoint, files, outDir, runs);
    rows.push({ bench: BENCH, figure: 'server RSS right after start (idle)', value: fmtMB(idle.rssKb) });

    let mounted = false;
    try {
      await server.ok('POST', '/api/admin/storage/create', {
        mount_path: '/dav',
        driver: 'WebDav',
        addition: JSON.stringify({
          address: webdav.address,
          username: DAV_USER,
          password: DAV_PASS,
          root_folder_path: '/',
        }),
      });
      mounted = true;
    } catch (err) {
      log(`${BENCH}: dav-small skipped: mounting WebDav failed: ${errorText(err)}`);
      rows.push({
        bench: BENCH,
        figure: 'dav-small: mount WebDav in ferry — FAILED',
        value: errorText(err).split('\n')[0] ?? '',
        met: false,
      });
    }
    if (mounted) {
      rows.push(...(await davBench(server, webdav.address, files, davRoot, runs)));
      const mem = await server.memory();
      rows.push({
        bench: BENCH,
        figure: `server peak RSS after dav-small too (VmHWM, ${loaderNote()})`,
        value: fmtMB(mem.hwmKb),
      });
    }
    return rows;
  } finally {
    await server.stop();
    await webdav.stop();
    await s3.stop();
    for (const dir of dirs) await remove(dir);
  }
}
