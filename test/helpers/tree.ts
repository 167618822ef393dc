import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Name prefix of ferry's unfinished writes (src/storage/paths.ts TEMP_PREFIX), spelled out on purpose. */
export const FERRY_TEMP_PREFIX = '.ferry-tmp-';

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 of a file, streamed (never the whole file in memory). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Write `size` bytes of pseudo-random data (AES-128-CTR keystream with a random key: incompressible,
 * never repeating, several GB/s) to `path`; returns the SHA-256 of what was written.
 */
export async function writeRandomFile(path: string, size: number): Promise<string> {
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(8 * 1024 * 1024);
  const hash = createHash('sha256');
  const handle = await open(path, 'w');
  try {
    for (let written = 0; written < size; ) {
      const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.length, size - written)));
      hash.update(chunk);
      let offset = 0;
      while (offset < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset, written + offset);
        offset += bytesWritten;
      }
      written += chunk.length;
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** What `makeTree` wrote. Paths are relative to the tree root and start with `/`. */
export interface TreeSpec {
  /** Relative file path → { size, sha256 }. */
  files: Map<string, { size: number; sha: string }>;
  /** Every folder below the root (relative paths), including the empty ones. */
  dirs: string[];
  /** Folders with nothing inside. */
  emptyDirs: string[];
  totalBytes: number;
}

/**
 * A tree of `count` files of varied sizes in nested folders (up to three levels), with some empty
 * files, a few files above 256 KiB (ferry's chunked-copy path), some names with spaces and non-ASCII
 * characters, and a few empty folders (one nested in another).
 */
export async function makeTree(root: string, count: number): Promise<TreeSpec> {
  const files = new Map<string, { size: number; sha: string }>();
  const dirs = new Set<string>();
  let totalBytes = 0;
  await mkdir(root, { recursive: true });
  for (let i = 0; i < count; i++) {
    const parts = [`dir ${i % 9}`];
    if (i % 3 !== 0) parts.push(`sub-${i % 5}`);
    if (i % 4 === 1) parts.push(`deep é${i % 2}`);
    for (let d = 1; d <= parts.length; d++) dirs.add(`/${parts.slice(0, d).join('/')}`);
    const size = i % 97 === 0 ? 0 : i % 331 === 5 ? 300_000 + (i % 7) * 1111 : 1 + ((i * 7919 + 13) % 20_000);
    const name = i % 11 === 0 ? `file ${i}.dat` : `f${i}.bin`;
    const data = randomBytes(size);
    const rel = `/${parts.join('/')}/${name}`;
    await mkdir(join(root, ...parts), { recursive: true });
    await writeFile(join(root, ...parts, name), data);
    files.set(rel, { size, sha: sha256(data) });
    totalBytes += size;
  }
  // `/empty-top` holds only an empty folder; the other two hold nothing at all.
  const emptyDirs = ['/empty-top/empty-inner', '/dir 0/empty here'];
  for (const d of emptyDirs) {
    await mkdir(join(root, d), { recursive: true });
    dirs.add(d);
  }
  dirs.add('/empty-top');
  return { files, dirs: [...dirs].sort(), emptyDirs, totalBytes };
}

/** Every entry below `dir`: relative path → SHA-256 for files, `'dir'` for folders. */
export async function snapshotTree(dir: string, prefix = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = `${prefix}/${entry.name}`;
    const abs = join(dir, entry.name);
    if (entry.isDirectory()) {
      out.set(rel, 'dir');
      for (const [k, v] of await snapshotTree(abs, rel)) out.set(k, v);
    } else {
      out.set(rel, await sha256File(abs));
    }
  }
  return out;
}

/** The snapshot `snapshotTree` should give for a tree `makeTree` wrote. */
export function expectedSnapshot(spec: TreeSpec): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of spec.dirs) out.set(d, 'dir');
  for (const [rel, f] of spec.files) out.set(rel, f.sha);
  return out;
}

/** Compare two snapshots; returns human-readable differences (empty when identical). */
export function diffSnapshots(actual: Map<string, string>, expected: Map<string, string>): string[] {
  const diffs: string[] = [];
  for (const [k, v] of expected) {
    const a = actual.get(k);
    if (a === undefined) diffs.push(`missing ${k}`);
    else if (a !== v) diffs.push(`differs ${k}`);
  }
  for (const k of actual.keys()) if (!expected.has(k)) diffs.push(`unexpected ${k}`);
  return diffs;
}

/** Paths (below `dir`, recursively) of ferry temp files. Missing `dir` → none. */
export async function findTempFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return found;
    throw err;
  }
  for (const entry of entries) {
    const abs = join(dir, entry.name);
    if (entry.name.startsWith(FERRY_TEMP_PREFIX)) found.push(abs);
    if (entry.isDirectory()) found.push(...(await findTempFiles(abs)));
  }
  return found;
}

/** True when something exists at `path`. */
export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/** Inode and modification time of a file, to tell "left alone" from "written again". */
export async function identity(path: string): Promise<{ ino: number; mtimeNs: bigint }> {
  const s = await stat(path, { bigint: true });
  return { ino: Number(s.ino), mtimeNs: s.mtimeNs };
}
