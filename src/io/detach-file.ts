import { constants, copyFile, rename, stat } from 'node:fs/promises';

/**
 * Give the file at `path` a new inode with the same bytes, before an attempt continues what an
 * earlier one wrote into it; its size then, or `null` when nothing is there. The earlier attempt
 * may live on in a node that stalled past its lease (SIGSTOP, a long pause) with the file still
 * open: once it wakes, its writes land in the old inode, which no name points to any more, instead
 * of in the file this attempt finishes and places. A copy within one file system is cheap (a
 * reflink or an in-kernel copy where the file system has them).
 */
export async function detachFile(path: string): Promise<number | null> {
  const fresh = `${path}.resumed`;
  try {
    await copyFile(path, fresh, constants.COPYFILE_FICLONE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  await rename(fresh, path);
  return (await stat(path)).size;
}
