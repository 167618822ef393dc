/**
 * scale-out: tasks/s end to end with one node and with two nodes on the same PostgreSQL store.
 *
 * Each run gets a fresh PostgreSQL schema (`BENCH_POSTGRES_URL`, default the test server
 * `postgres://postgres@127.0.0.1:5432/test`). `BENCH_SCALE_TASKS` tiny copy tasks (a 1-byte file
 * each, 500 names per `fs/copy` call, the calls shared out over the nodes) are timed from the
 * first create to the last one observed succeeded; the two-node figure is divided by the
 * one-node one. Both nodes copy within one shared `/local` (the first node's data directory).
 * Where the time went: CPU seconds of the nodes, of every postgres process, and how busy the
 * whole machine was over the run.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { fmtS, log, now, type Row, remove, type Server, sleep, startServer } from './lib.ts';

const BENCH = 'scale-out';
const PER_CALL = 500;
const TICKS = 100;

/** What one run measured. */
interface Measured {
  rate: number;
  seconds: number;
  /** CPU seconds of the ferry node processes, together. */
  nodesCpu: number;
  /** CPU seconds of every postgres process on the machine (others' too, if any run). */
  postgresCpu: number;
  /** Share of the machine's CPU time busy over the run (all processes, all cores). */
  busy: number;
}

export async function scaleOut(root: string): Promise<Row[]> {
  const total = Number(process.env.BENCH_SCALE_TASKS ?? 4000);
  const one = await run(root, 1, total);
  const two = await run(root, 2, total);
  const ratio = two.rate / one.rate;
  log(
    `${BENCH}: 1 node ${Math.round(one.rate)} tasks/s, 2 nodes ${Math.round(two.rate)} tasks/s, ${ratio.toFixed(2)}×`,
  );
  const where = (m: Measured) =>
    `ferry ${m.nodesCpu.toFixed(1)} s, postgres ${m.postgresCpu.toFixed(1)} s in ${m.seconds.toFixed(1)} s; machine ${Math.round(m.busy * 100)} % busy`;
  return [
    {
      bench: BENCH,
      figure: `${total.toLocaleString('en-US')} copy tasks of a 1-byte file, PostgreSQL, 1 node: first create → last succeeded`,
      value: `${Math.round(one.rate)} tasks/s`,
    },
    {
      bench: BENCH,
      figure: 'the same with 2 nodes on the same PostgreSQL (creates shared out)',
      value: `${Math.round(two.rate)} tasks/s`,
      ratio: `${ratio.toFixed(2)}× of 1 node`,
    },
    { bench: BENCH, figure: '1 node: CPU seconds', value: where(one) },
    { bench: BENCH, figure: '2 nodes: CPU seconds', value: where(two) },
  ];
}

/** CPU seconds (user + system) of process `pid`, 0 when it is gone. */
async function cpuOf(pid: number | string): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The fields after the command name, which is in parentheses and may hold spaces.
  const stat = text.split(') ')[1]?.split(' ') ?? [];
  return stat.length > 12 ? (Number(stat[11]) + Number(stat[12])) / TICKS : 0;
}

/** CPU seconds of every process named postgres. */
async function postgresCpu(): Promise<number> {
  let sum = 0;
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const comm = await readFile(`/proc/${name}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'postgres') sum += await cpuOf(name);
  }
  return sum;
}

/** Busy and total jiffies of the whole machine (the `cpu` line of /proc/stat). */
async function machine(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const fields = line.trim().split(/ +/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** One run with `count` nodes on a fresh schema. */
async function run(root: string, count: number, total: number): Promise<Measured> {
  const base = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `ferry_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const dirs = Array.from({ length: count }, (_, i) => join(root, `scale-${count}-${i}`));
  const servers: Server[] = [];
  try {
    const srcDir = join(dirs[0] as string, 'files', 'tiny');
    await mkdir(srcDir, { recursive: true });
    const names: string[] = [];
    for (let i = 0; i < PER_CALL; i++) {
      const name = `f${String(i).padStart(3, '0')}`;
      names.push(name);
      await writeFile(join(srcDir, name), 'x');
    }
    // The first node creates the schema and /local; the others join.
    const env = { FERRY_DATABASE_URL: url.toString() };
    servers.push(await startServer({ dataDir: dirs[0] as string, env }));
    for (const dir of dirs.slice(1)) servers.push(await startServer({ dataDir: dir, env }));
    log(`${BENCH}: ${count} node(s) up; creating ${total} copy tasks`);
    const cpu0 = await Promise.all(servers.map((s) => cpuOf(s.pid)));
    const pg0 = await postgresCpu();
    const m0 = await machine();
    const t0 = now();
    const calls = Math.ceil(total / PER_CALL);
    await Promise.all(
      servers.map(async (server, n) => {
        for (let call = n; call < calls; call += servers.length) {
          const batch = names.slice(0, Math.min(PER_CALL, total - call * PER_CALL));
          await server.ok('POST', '/api/fs/copy', {
            src_dir: '/local/tiny',
            dst_dir: `/local/tiny-out/d${call}`,
            names: batch,
          });
        }
      }),
    );
    const first = servers[0] as Server;
    const deadline = Date.now() + 300_000;
    for (;;) {
      const undone = await first.ok<unknown[]>('GET', '/api/task/copy/undone?limit=1');
      if (undone.length === 0) break;
      if (Date.now() > deadline) throw new Error('scale-out tasks did not finish within 300 s');
      await sleep(20);
    }
    const ms = now() - t0;
    const cpu1 = await Promise.all(servers.map((s) => cpuOf(s.pid)));
    const pg1 = await postgresCpu();
    const m1 = await machine();
    const { rows } = await admin.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${schema}.tasks WHERE state = 'succeeded'`,
    );
    if (Number(rows[0]?.n) !== total) throw new Error(`${rows[0]?.n} of ${total} tasks succeeded`);
    log(`${BENCH}: ${count} node(s): ${total} tasks in ${fmtS(ms)}`);
    return {
      rate: total / (ms / 1000),
      seconds: ms / 1000,
      nodesCpu: cpu1.reduce((a, b, i) => a + b - (cpu0[i] ?? 0), 0),
      postgresCpu: pg1 - pg0,
      busy: (m1.busy - m0.busy) / (m1.total - m0.total),
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await admin.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
    for (const dir of dirs) await remove(dir);
  }
}
