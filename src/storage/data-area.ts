import { randomBytes } from 'node:crypto';
import { join, resolve, sep } from 'node:path';
import { FerryError } from '../errors.ts';
import type { Driver, Endpoint } from './driver.ts';
import { LocalDriver } from './local/local-driver.ts';

/** One task's own folder in the data directory: a task id is all it is named by. */
function taskFolder(area: string, taskId: string): string {
  if (!/^[\w-]+$/.test(taskId)) throw new FerryError('E_BAD_REQUEST', 'bad task id');
  return `/${area}/${taskId}`;
}

/**
 * ferry's staging directory (`stagingDir`, the data directory unless configured) as a driver:
 * where uploads are spooled, offline downloads land and
 * archives are extracted before they reach a mount. Tasks reach these files as they reach any
 * mount's, through a `Driver` and its path checks, never by a local path; the storage layer's
 * fast paths (`linkInto`, `moveInto`, `copyBetween`) see that both ends are local and act on the
 * files directly.
 */
export class DataArea {
  private constructor(
    readonly driver: Driver,
    private readonly root: string,
  ) {}

  private static readonly opened = new Map<string, Promise<DataArea>>();

  /** The data area of `dataDir` (an absolute path), one per directory and process. */
  static open(dataDir: string): Promise<DataArea> {
    let area = DataArea.opened.get(dataDir);
    if (!area) {
      area = LocalDriver.open(dataDir).then((driver) => new DataArea(driver, resolve(dataDir)));
      // A failed open is tried again next time.
      area.catch(() => DataArea.opened.delete(dataDir));
      DataArea.opened.set(dataDir, area);
    }
    return area;
  }

  private at(path: string): Endpoint {
    return { driver: this.driver, path };
  }

  /** Where an upload's body waits until its task writes it to storage (`spool/<taskId>`). */
  spool(taskId: string): Endpoint {
    return this.at(taskFolder('spool', taskId));
  }

  /** The ids of the tasks whose upload bodies wait in the spool. */
  async spooled(): Promise<string[]> {
    const entries = await this.driver.list('/spool').catch(() => []);
    return entries.filter((e) => !e.isDir && /^[\w-]+$/.test(e.name)).map((e) => e.name);
  }

  /** One offline download's own folder (`offline/<taskId>`). */
  offline(taskId: string): Endpoint {
    return this.at(taskFolder('offline', taskId));
  }

  /** A decompress (or decompress_upload) task's private folder (`decompress/<taskId>`). */
  decompress(taskId: string): Endpoint {
    return this.at(taskFolder('decompress', taskId));
  }

  /** A private folder for one look into an archive (`decompress/list-<random>`). */
  listing(): Endpoint {
    return this.at(`/decompress/list-${randomBytes(8).toString('hex')}`);
  }

  /**
   * The endpoint of a file of the offline download area named by its absolute path (as an
   * `offline_download_transfer` payload names it, and the seed's task name shows it).
   * `E_PATH_OUTSIDE_ROOT` for a path outside `offline/`.
   */
  offlineFile(absolute: string): Endpoint {
    const root = join(this.root, 'offline') + sep;
    if (!resolve(absolute).startsWith(root) || resolve(absolute) !== absolute)
      throw new FerryError('E_PATH_OUTSIDE_ROOT', 'transfer source is not in the offline download area');
    return this.at(`/offline/${absolute.slice(root.length).split(sep).join('/')}`);
  }

  /** The absolute name of `path` in the data area: for task names and logs, which show it. */
  shown(path: string): string {
    return join(this.root, ...path.split('/').filter(Boolean));
  }
}
