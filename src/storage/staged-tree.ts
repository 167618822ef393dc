import type { Endpoint } from './driver.ts';
import { StagedCopies } from './local/staged-copies.ts';
import { baseName, joinPath, parentPath, tempPathFor } from './paths.ts';
import { SMALL_LOCAL_COPY, smallCopyError } from './transfer.ts';

/** What becomes of one file handed to `StagedTree.add`. */
export interface StagedTreeFile {
  /** The file's path relative to the tree, starting with `/`. */
  rel: string;
  size: number;
  overwrite: boolean;
  /** It is in place: its bytes are durable (its name will be by the time `done` runs). */
  placed(): void;
  /**
   * It could not be put in place (its temp file is gone): `err`, or `'link'` when the source
   * proved a link, which the staging does not follow: copy that one the general way.
   */
  failed(err: Error | 'link'): void;
  /** Its name is durable too: a move may now delete the source. */
  done(): Promise<void>;
}

/**
 * Many small files of one tree copied between two local mounts and made durable in batches (see
 * `StagedCopies`), rather than with an fsync each. `open` gives null unless both ends are local.
 */
export class StagedTree {
  private readonly folders: LocalFolders;

  private constructor(
    private readonly copies: StagedCopies,
    src: Endpoint,
    dst: Endpoint,
    private readonly tempKey: string,
  ) {
    this.folders = new LocalFolders(src, dst);
  }

  /** A staging for copies of the tree `src` into the folder `dst`; null unless both are local. */
  static open(
    src: Endpoint,
    dst: Endpoint,
    options: { signal: AbortSignal; sync: boolean; tempKey: string; beforePlace?: () => Promise<void> },
  ): StagedTree | null {
    const dstRoot = src.driver.localPath(src.path) && dst.driver.localPath(dst.path);
    if (!dstRoot) return null;
    const copies = new StagedCopies(dstRoot, options.signal, options.sync, options.beforePlace);
    return new StagedTree(copies, src, dst, options.tempKey);
  }

  /**
   * Queue the file `file.rel` of the tree to be copied and placed with its batch; false, having
   * done nothing, for a file larger than `SMALL_LOCAL_COPY`. A failure to copy it goes to
   * `file.failed`; `add` throws only what fails the whole tree.
   */
  async add(file: StagedTreeFile): Promise<boolean> {
    if (file.size > SMALL_LOCAL_COPY) return false;
    const paths = this.folders.paths(file.rel);
    if (!paths) return false;
    await this.copies.add(
      {
        src: paths.from,
        temp: tempPathFor(paths.to, this.tempKey),
        final: paths.to,
        overwrite: file.overwrite,
        placed: () => file.placed(),
        failed: (failure) =>
          file.failed(
            failure.code === 'ELOOP'
              ? 'link'
              : smallCopyError(failure, this.folders.srcOf(file.rel), this.folders.dstOf(file.rel)),
          ),
        done: () => file.done(),
      },
      file.size,
    );
    return true;
  }

  /** Copy, flush and place what is left, then make the names durable; throws when a flush failed. */
  finish(): Promise<void> {
    return this.copies.finish();
  }

  /** After a failure or a cancel: let running work end, then remove the unplaced temp files. */
  abandon(): Promise<void> {
    return this.copies.abandon();
  }
}

/**
 * The local paths of files in a tree copied between two local mounts, checked once per folder
 * (`localPath` of the folder) rather than once per file: a file's name comes from a listing, so
 * it holds no `/` and is not `.` or `..`. What is at the name is not looked at here: the small-file
 * thread copies no link (it reports ELOOP), and the copy is put in place by link or rename, which
 * follow none. Files arrive folder by folder, so only the last folder is remembered.
 */
class LocalFolders {
  private folder: string | null = null;
  private from = '';
  private to = '';

  constructor(
    private readonly src: Endpoint,
    private readonly dst: Endpoint,
  ) {}

  srcOf(rel: string): Endpoint {
    return { driver: this.src.driver, path: joinPath(this.src.path, rel) };
  }

  dstOf(rel: string): Endpoint {
    return { driver: this.dst.driver, path: joinPath(this.dst.path, rel) };
  }

  /** The local source and destination of the file at `rel` (relative to the tree). */
  paths(rel: string): { from: string; to: string } | null {
    const folder = parentPath(rel);
    if (folder !== this.folder) {
      // joinPath(x, '/') is x itself.
      const from = this.src.driver.localPath(joinPath(this.src.path, folder));
      const to = this.dst.driver.localPath(joinPath(this.dst.path, folder));
      if (from === null || to === null) return null;
      this.folder = folder;
      this.from = from;
      this.to = to;
    }
    const name = baseName(rel);
    return { from: `${this.from}/${name}`, to: `${this.to}/${name}` };
  }
}
