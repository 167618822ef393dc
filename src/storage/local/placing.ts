import { link, lstat, open, rename, rm, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TEMP_PREFIX, tempToken } from '../paths.ts';

/*
 * How a finished local file or folder takes its final name: durably (fsync), atomically
 * (rename), and without replacing what is there unless asked (link).
 */

/** fsync through a second descriptor: it flushes the file's data whichever descriptor wrote it. */
export async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Put a finished temp file in place: rename over it (overwrite) or refuse an existing name. */
export async function place(temp: string, target: string, overwrite: boolean): Promise<void> {
  if (overwrite) await rename(temp, target);
  else await moveNoClobber(temp, target);
}

/** link() failures that mean "this file system has no hard links" (FAT, exFAT, some network mounts). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK']);

/**
 * Move the file `from` to `to` unless `to` exists: link() refuses an existing name atomically,
 * then the old name is unlinked. A crash in between leaves both names on one inode; the retry
 * sees that (same inode) and finishes. Where hard links are unsupported it falls back to
 * check-then-rename, accepting that a file created at `to` in between would be replaced.
 */
export async function moveNoClobber(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST' && (await sameFile(from, to))) return unlink(from);
    if (!NO_HARD_LINKS.has(code)) throw err;
    if (await lstat(to).catch(() => null)) throw Object.assign(new Error(`${to} exists`), { code: 'EEXIST' });
    return rename(from, to);
  }
  try {
    await unlink(from);
  } catch (err) {
    // Leave things as they were rather than the file under two names.
    await unlink(to).catch(() => undefined);
    throw err;
  }
}

export async function sameFile(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([lstat(a).catch(() => null), lstat(b).catch(() => null)]);
  return sa !== null && sb !== null && sa.ino === sb.ino && sa.dev === sb.dev;
}

/** Replace the folder `to` by `from`: set `to` aside (hidden), rename, then remove the old one. */
export async function replaceFolder(from: string, to: string): Promise<void> {
  const aside = join(dirname(to), `${TEMP_PREFIX}${tempToken(to)}`);
  await rename(to, aside);
  try {
    await rename(from, to);
  } catch (err) {
    await rename(aside, to).catch(() => undefined);
    throw err;
  }
  await rm(aside, { recursive: true, force: true });
}
