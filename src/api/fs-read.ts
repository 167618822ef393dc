import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { LinkSigner } from '../auth/link-signer.ts';
import { can, isAdmin, type Principal } from '../auth/roles.ts';
import { FerryError, isFerryError } from '../errors.ts';
import { childPath, toVirtual } from '../files/user-path.ts';
import type { Entry } from '../storage/driver.ts';
import type { MountRegistry, Resolved } from '../storage/mounts.ts';
import { baseName, isWithin, normalizePath, parentPath } from '../storage/paths.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { OBJ_TYPE, type ObjFacts, type ObjView, objType, objView } from './alist/obj-view.ts';
import { encodePath, publicOrigin } from './alist/public-origin.ts';
import { principalOf } from './context.ts';

/** A folder's entries: its own (when a storage holds it) and the folders leading to mounts below it. */
interface Folder {
  entries: ObjFacts[];
  /** The driver of the storage holding the folder; `unknown` for a folder only mounts make. */
  provider: string;
}

/** One object found by `fs/get`. */
interface Found {
  facts: ObjFacts;
  provider: string;
  /** Where a storage holds it; absent for a folder only mounts make. */
  resolved?: Resolved;
}

function body(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw new FerryError('E_BAD_REQUEST', 'body must be a JSON object');
  return b as Record<string, unknown>;
}

const notFound = () => new FerryError('E_NOT_FOUND', 'object not found');

/**
 * The folders below `path` that lead to mounts (`/a` holds `b` when a storage is mounted at
 * `/a/b/c`), each dated by the first such mount in mount order, as AList dates them.
 */
function virtualFolders(mounts: MountRegistry, path: string): ObjFacts[] {
  return mounts.virtualChildren(path).map((name) => {
    const below = childPath(path, name);
    const mount = mounts.all().find((m) => isWithin(m.record.mountPath, below));
    return { name, isDir: true, size: 0, modified: mount?.record.modified ?? 0 };
  });
}

/** True when some mount holds `path` (whether or not its driver runs). */
function isCovered(mounts: MountRegistry, path: string): boolean {
  return mounts.all().some((m) => isWithin(path, m.record.mountPath));
}

/**
 * The entries of the folder at the virtual `path`, folders leading to mounts first. A path that
 * no storage holds but mounts lie below is a folder of those alone, as is one whose storage
 * lacks it (`/a` of a mount at `/a/b/c` where the storage at `/a` has no `b`). `E_NOT_FOUND` when
 * it is neither a folder in a storage nor above a mount.
 */
async function listFolder(mounts: MountRegistry, path: string): Promise<Folder> {
  const virtual = virtualFolders(mounts, path);
  if (!isCovered(mounts, path)) {
    if (virtual.length === 0) throw notFound();
    return { entries: virtual, provider: 'unknown' };
  }
  try {
    const r = mounts.resolve(path);
    const shown = new Set(virtual.map((v) => v.name));
    const own = (await r.driver.list(r.path)).filter((e) => !shown.has(e.name));
    return { entries: [...virtual, ...own], provider: r.mount.record.driver };
  } catch (err) {
    if (virtual.length > 0 && (isFerryError(err, 'E_NOT_FOUND') || isFerryError(err, 'E_NO_STORAGE')))
      return { entries: virtual, provider: 'unknown' };
    throw err;
  }
}

/**
 * The object at the virtual `path`: a storage's file or folder, or a folder made by the mounts
 * below it (`/` always is one). Where a storage has a file at a path that mounts lie below, the
 * folder wins, as in AList. `E_NOT_FOUND` when there is nothing.
 */
async function findObject(mounts: MountRegistry, path: string): Promise<Found> {
  const name = baseName(path) || 'root';
  const hasMountsBelow = path === '/' || mounts.virtualChildren(path).length > 0;
  let entry: Entry | null = null;
  let resolved: Resolved | undefined;
  if (isCovered(mounts, path)) {
    try {
      resolved = mounts.resolve(path);
      entry = await resolved.driver.stat(resolved.path);
    } catch (err) {
      const missing = isFerryError(err, 'E_NOT_FOUND') || isFerryError(err, 'E_NO_STORAGE');
      if (!(hasMountsBelow && missing)) throw err;
    }
  }
  if (resolved && entry && (entry.isDir || !hasMountsBelow))
    return { facts: { ...entry, name }, provider: resolved.mount.record.driver, resolved };
  if (!hasMountsBelow) throw notFound();
  const first = mounts.all().find((m) => isWithin(m.record.mountPath, path));
  return {
    facts: { name, isDir: true, size: 0, modified: first?.record.modified ?? 0 },
    provider: 'unknown',
  };
}

/**
 * Files next to `found` whose names start with its name without the extension (`film.srt` for
 * `film.mp4`): AList's `related`, which the web UI's video preview takes subtitles and danmaku
 * from. null when there are none or the folder cannot be listed, as AList answers. Only videos
 * get them: nothing else reads them, and listing the folder on every `fs/get` (the SDKs' `exists()`
 * calls it for each path) would cost a listing of a possibly huge folder each time.
 */
async function relatedTo(found: Found, signer: LinkSigner, path: string): Promise<ObjView[] | null> {
  const r = found.resolved;
  if (!r || objType(found.facts.name, found.facts.isDir) !== OBJ_TYPE.VIDEO) return null;
  const dot = found.facts.name.lastIndexOf('.');
  const stem = dot < 0 ? found.facts.name : found.facts.name.slice(0, dot);
  const dir = parentPath(path);
  try {
    const related = (await r.driver.list(parentPath(r.path))).filter(
      (e) => e.name !== found.facts.name && e.name.startsWith(stem),
    );
    return related.length ? related.map((e) => objView(e, signer.sign(childPath(dir, e.name)))) : null;
  } catch {
    return null;
  }
}

/**
 * AList's read-only file API: `fs/list`, `fs/get`, `fs/dirs`. Paths are the caller's (below its
 * base path). Folders that only lead to mounts (`/`, or `/a` for a mount at `/a/b`) are listed and
 * described like any folder.
 *
 * Every file carries `sign`, the sign of its download link: ferry signs all files, as AList does
 * by default (`sign_all`), so a link the web UI builds (`/d/<base path><path>?sign=…`) or a
 * `raw_url` works without a token, in a browser tab, a download tool or a video player.
 *
 * A missing path is `E_NOT_FOUND` (404 in the seed flavour); in the `current` flavour it is code
 * 500 "object not found" as AList answers, which the SDKs' `exists()` look for.
 */
export async function fsReadRoutes(app: FastifyInstance): Promise<void> {
  const { mounts, links } = app.core;
  /**
   * raw_url points at the prefix this route was reached through (`/@openlist/d/…` for the web UI,
   * `/d/…` at the root): the same bytes either way, but a reverse proxy that only forwards the
   * prefix the client uses forwards the link too, and it is the form the web UI builds itself.
   */
  const downloadBase = `${app.prefix}/d`;
  const failed = (request: FastifyRequest, reply: FastifyReply, err: unknown) => {
    if (flavourOf(request) === 'current' && isFerryError(err, 'E_NOT_FOUND'))
      return reply.code(200).send({ code: 500, message: 'object not found', data: null });
    if (flavourOf(request) === 'current' && isFerryError(err, 'E_NO_STORAGE'))
      return reply.code(200).send({ code: 500, message: err.message, data: null });
    return sendError(reply, err);
  };
  const route = (url: string, run: (request: FastifyRequest, principal: Principal) => Promise<unknown>) =>
    app.post(url, async (request, reply) => {
      try {
        return ok(await run(request, await principalOf(request)));
      } catch (err) {
        return failed(request, reply, err);
      }
    });

  route('/api/fs/list', async (request, principal) => {
    const b = body(request);
    const path = toVirtual(principal, b.path ?? '/');
    const folder = await listFolder(mounts, path);
    const perPage = Math.max(0, Number(b.per_page) || 0);
    const page = Math.max(1, Number(b.page) || 1);
    const slice = perPage ? folder.entries.slice((page - 1) * perPage, page * perPage) : folder.entries;
    return {
      content: slice.map((e) => objView(e, e.isDir ? '' : links.sign(childPath(path, e.name)))),
      total: folder.entries.length,
      readme: '',
      header: '',
      write: can(principal, 'WRITE'),
      provider: folder.provider,
    };
  });

  route('/api/fs/get', async (request, principal) => {
    const path = toVirtual(principal, body(request).path ?? '/');
    const found = await findObject(mounts, path);
    const sign = found.facts.isDir ? '' : links.sign(path);
    return {
      ...objView(found.facts, sign),
      raw_url: found.facts.isDir
        ? ''
        : `${publicOrigin(request)}${downloadBase}${encodePath(path)}?sign=${sign}`,
      readme: '',
      header: '',
      provider: found.provider,
      related: await relatedTo(found, links, path),
    };
  });

  /**
   * The folders in `path`, for the web UI's folder picker (copy, move, decompress, offline
   * download targets): `[{name, modified}]`, folders leading to mounts included. With
   * `force_root` an admin names a path from the root of the tree rather than below its base path
   * (AList's `FsDirs`); anyone else is refused. `password` (AList's folder passwords) is ignored:
   * ferry has none.
   */
  route('/api/fs/dirs', async (request, principal) => {
    const b = body(request);
    let path: string;
    if (b.force_root === true) {
      if (!isAdmin(principal)) throw new FerryError('E_FORBIDDEN', 'Permission denied');
      path = normalizePath(b.path ?? '/');
    } else {
      path = toVirtual(principal, b.path ?? '/');
    }
    const folder = await listFolder(mounts, path);
    return folder.entries
      .filter((e) => e.isDir)
      .map((e) => ({ name: e.name, modified: new Date(e.modified).toISOString() }));
  });
}
