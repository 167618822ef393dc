import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { lstat, readdir, readlink, rm } from 'node:fs/promises';
import { basename, delimiter, join } from 'node:path';
import { FerryError } from '../errors.ts';
import { joinPath } from '../storage/paths.ts';
import type { ArchiveEntry, ArchiveListing, ExtractJob } from './formats.ts';
import { selectEntry } from './formats.ts';
import { entryPath, linkTarget } from './guard.ts';

/** How often the staging folder is measured while 7-Zip writes into it. */
const MEASURE_INTERVAL_MS = 150;

let found: string | null | undefined;

/** The system 7-Zip (`7z`, `7zz` or `7za` on PATH, as Debian's `7zip` installs it), or null. */
export function sevenZipBinary(path = process.env.PATH ?? ''): string | null {
  if (found !== undefined) return found;
  found = null;
  for (const name of ['7z', '7zz', '7za']) {
    for (const dir of path.split(delimiter).filter(Boolean)) {
      try {
        accessSync(join(dir, name), constants.X_OK);
        found = join(dir, name);
        return found;
      } catch {
        // not here
      }
    }
  }
  return found;
}

function requireSevenZip(format: string): string {
  const bin = sevenZipBinary();
  if (!bin)
    throw new FerryError('E_TOOL_MISSING', `${format} archives need 7-Zip: install the Debian package 7zip`);
  return bin;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run 7-Zip with stdin closed (so it can never wait for a typed password), killed on abort. */
function run7z(
  args: string[],
  signal: AbortSignal,
  options: { keepStdout?: boolean; format: string },
): { result: Promise<RunResult>; kill(): void } {
  const bin = requireSevenZip(options.format);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], signal, killSignal: 'SIGKILL' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    if (options.keepStdout) stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const result = new Promise<RunResult>((resolve, reject) => {
    child.once('error', (err) => {
      if (signal.aborted) reject(new FerryError('E_CANCELED', 'canceled', { cause: err }));
      else reject(err);
    });
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { result, kill: () => child.kill('SIGKILL') };
}

/** Map a failed 7-Zip run to a clear error (without the data directory's paths in it). */
function failure(res: RunResult, password: string, format: string, file: string): FerryError {
  const text = res.stderr.replaceAll(file, basename(file)).trim();
  if (/wrong password|encrypted/i.test(text)) {
    return password
      ? new FerryError('E_ARCHIVE_PASSWORD', 'wrong archive password')
      : new FerryError('E_ARCHIVE_PASSWORD', 'the archive is encrypted: a password is required');
  }
  const line = text.split('\n').find((l) => /error/i.test(l)) ?? text.split('\n')[0] ?? '';
  return new FerryError(
    'E_ARCHIVE_FORMAT',
    `7-Zip could not read the ${format} archive: ${line || `exit ${res.code}`}`,
  );
}

/** The entries of a 7z/rar archive (`7z l -slt`); encrypted headers need the password. */
export async function listSevenZip(
  file: string,
  password: string,
  signal: AbortSignal,
  format: string,
): Promise<ArchiveListing> {
  const { result } = run7z(['l', '-slt', '-ba', `-p${password}`, '--', file], signal, {
    keepStdout: true,
    format,
  });
  const res = await result;
  if (res.code !== 0) throw failure(res, password, format, file);
  const entries: ArchiveEntry[] = [];
  let encrypted = false;
  for (const block of res.stdout.split(/\r?\n\r?\n/)) {
    const fields = new Map<string, string>();
    for (const line of block.split(/\r?\n/)) {
      const i = line.indexOf(' = ');
      if (i > 0) fields.set(line.slice(0, i), line.slice(i + 3));
    }
    const raw = fields.get('Path');
    if (raw === undefined) continue;
    if (fields.get('Encrypted') === '+') encrypted = true;
    const isDir = fields.get('Folder') === '+' || (fields.get('Attributes') ?? '').startsWith('D');
    const modified = Date.parse((fields.get('Modified') ?? '').replace(' ', 'T'));
    entries.push({
      path: entryPath(raw),
      isDir,
      size: isDir ? 0 : Number(fields.get('Size')) || 0,
      modified: Number.isFinite(modified) ? modified : 0,
    });
  }
  return { entries, encrypted, comment: '' };
}

/** Bytes and entries below `dir` (links counted, not followed). */
async function measure(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const walk = async (d: string): Promise<void> => {
    const names = await readdir(d).catch(() => [] as string[]);
    for (const name of names) {
      const info = await lstat(join(d, name)).catch(() => null);
      if (!info) continue;
      entries++;
      if (info.isDirectory()) await walk(join(d, name));
      else bytes += info.size;
    }
  };
  await walk(dir);
  return { bytes, entries };
}

/**
 * Extract a 7z or rar archive with the system 7-Zip. Names are checked from the listing first;
 * 7-Zip then writes into a private staging folder that is measured while it runs (7-Zip is
 * killed past a limit), and each extracted file is moved into `job.tree` after a last check of
 * every link.
 */
export async function extractSevenZip(job: ExtractJob, format: string): Promise<void> {
  const listing = await listSevenZip(job.file, job.password, job.signal, format);
  const selected = listing.entries.filter((e) => selectEntry(job.innerPath, e.path) !== null);
  if (job.innerPath !== '/' && selected.length === 0)
    throw new FerryError('E_NOT_FOUND', `not in the archive: ${job.innerPath}`);
  job.setTotals({
    bytes: selected.reduce((n, e) => n + e.size, 0),
    files: selected.filter((e) => !e.isDir).length,
  });
  await rm(job.stageDir, { recursive: true, force: true });
  const args = ['x', '-y', '-bd', '-bso0', '-bsp0', `-p${job.password}`, `-o${job.stageDir}`, '--', job.file];
  if (job.innerPath !== '/') args.push(job.innerPath.slice(1));
  const child = run7z(args, job.signal, { format });
  let reported = 0;
  let measuring = false;
  let limitError: unknown = null;
  const timer = setInterval(() => {
    if (measuring) return;
    measuring = true;
    measure(job.stageDir)
      .then(({ bytes, entries }) => {
        job.guard.measured(bytes, entries);
        if (bytes > reported) job.onArchiveBytes?.(bytes - reported);
        reported = Math.max(reported, bytes);
      })
      .catch((err) => {
        limitError ??= err;
        child.kill();
      })
      .finally(() => {
        measuring = false;
      });
  }, MEASURE_INTERVAL_MS);
  let res: RunResult;
  try {
    res = await child.result;
  } finally {
    clearInterval(timer);
  }
  if (limitError) throw limitError;
  job.signal.throwIfAborted();
  if (res.code !== 0) throw failure(res, job.password, format, job.file);
  const total = await measure(job.stageDir);
  job.guard.measured(total.bytes, total.entries);
  if (total.bytes > reported) job.onArchiveBytes?.(total.bytes - reported);
  await adoptTree(job, '/');
}

/** Move what 7-Zip staged into the destination tree, refusing links that lead outside. */
async function adoptTree(job: ExtractJob, stagedRel: string): Promise<void> {
  const dir = stagedRel === '/' ? job.stageDir : join(job.stageDir, stagedRel);
  for (const name of await readdir(dir)) {
    job.signal.throwIfAborted();
    const childRel = joinPath(stagedRel, name);
    const abs = join(dir, name);
    const info = await lstat(abs);
    const rel = selectEntry(job.innerPath, childRel);
    if (info.isSymbolicLink()) {
      linkTarget(childRel, await readlink(abs));
      if (rel !== null) job.onSkippedLink(rel);
    } else if (info.isDirectory()) {
      if (rel !== null) await job.tree.dir(rel);
      await adoptTree(job, childRel);
    } else if (info.isFile() && rel !== null) {
      if (await job.tree.mayWrite(rel)) await job.tree.adopt(rel, abs);
    }
  }
}
