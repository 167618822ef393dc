import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type ArchiveEntry, formatOf, listArchive } from '../archive/index.ts';
import { can, type Permission, type Principal } from '../auth/roles.ts';
import { FerryError } from '../errors.ts';
import { toVirtual } from '../files/user-path.ts';
import type { MountRegistry } from '../storage/mounts.ts';
import { baseName, checkName, joinPath, normalizePath, parentPath, relativeTo } from '../storage/paths.ts';
import type { CreateTask } from '../tasks/service.ts';
import { ok, sendError } from './alist/envelope.ts';
import { flavourOf } from './alist/flavour.ts';
import { type ObjView, objView } from './alist/obj-view.ts';
import { encodePath, publicOrigin } from './alist/public-origin.ts';
import { alistTask } from './alist/task-view.ts';
import { principalOf } from './context.ts';
import { bracketed, mapLimit } from './task-specs.ts';

/** Most archive names one decompress request takes. */
const MAX_NAMES = 1000;

function need(principal: Principal, permission: Permission): void {
  if (!can(principal, permission))
    throw new FerryError('E_FORBIDDEN', `permission denied: ${permission.toLowerCase()}`);
}

function body(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw new FerryError('E_BAD_REQUEST', 'body must be a JSON object');
  return b as Record<string, unknown>;
}

function text(value: unknown, key: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new FerryError('E_BAD_REQUEST', `${key} must be a string`);
  return value;
}

/** The archive password: AList's `archive_pass`, or `password` as some clients send it. */
function archivePassword(b: Record<string, unknown>): string {
  return text(b.archive_pass, 'archive_pass') || text(b.password, 'password');
}

interface TreeNode extends ObjView {
  children?: TreeNode[];
}

/** The archive's entries as a tree; folders only implied by deeper entries are added. */
function buildTree(entries: readonly ArchiveEntry[]): Map<string, TreeNode[]> {
  const children = new Map<string, TreeNode[]>([['/', []]]);
  const nodes = new Map<string, TreeNode>();
  const ensure = (path: string, e: Pick<ArchiveEntry, 'isDir' | 'size' | 'modified'>): TreeNode => {
    const existing = nodes.get(path);
    if (existing) return existing;
    const parent = parentPath(path);
    if (parent !== '/') ensure(parent, { isDir: true, size: 0, modified: e.modified });
    // AList signs no archive entry: they are fetched through the archive's own sign.
    const node: TreeNode = objView({ ...e, name: baseName(path) });
    nodes.set(path, node);
    children.get(parent)?.push(node);
    if (e.isDir) {
      node.children = [];
      children.set(path, node.children);
    }
    return node;
  };
  for (const e of entries) if (e.path !== '/') ensure(e.path, e);
  return children;
}

/**
 * AList's archive endpoints: list or describe an archive's entries without extracting it, and
 * extract archives as `decompress` tasks. An archive on a remote driver is fetched to a temp file
 * for listing and removed afterwards.
 */
export async function archiveRoutes(app: FastifyInstance): Promise<void> {
  const { mounts, tasks, config, links } = app.core;
  const route = (url: string, run: (request: FastifyRequest, principal: Principal) => Promise<unknown>) =>
    app.post(url, async (request, reply) => {
      try {
        return ok(await run(request, await principalOf(request)));
      } catch (err) {
        return sendError(reply, err);
      }
    });

  /** List the archive at the caller's `path`. */
  const readListing = async (request: FastifyRequest, principal: Principal) => {
    need(principal, 'READ_ARCHIVES');
    const b = body(request);
    const virtual = toVirtual(principal, b.path);
    const r = mounts.resolve(virtual);
    const entry = await r.driver.stat(r.path);
    if (!entry) throw new FerryError('E_NOT_FOUND', 'object not found');
    if (entry.isDir) throw new FerryError('E_IS_A_DIRECTORY', 'not an archive but a folder');
    const format = formatOf(baseName(r.path));
    if (!format)
      throw new FerryError('E_ARCHIVE_FORMAT', `not an archive ferry can read: ${baseName(r.path)}`);
    const signal = AbortSignal.timeout(5 * 60_000);
    const local = r.driver.localPath(r.path);
    if (local) return { b, virtual, listing: await listArchive(local, format, archivePassword(b), signal) };
    const dir = join(config.dataDir, 'decompress', `list-${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true });
      const file = join(dir, baseName(r.path));
      await pipeline(await r.driver.read(r.path, { signal }), createWriteStream(file), { signal });
      return { b, virtual, listing: await listArchive(file, format, archivePassword(b), signal) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  /**
   * `raw_url` is the archive's own download link and `sign` its sign, apart: the web UI appends
   * `?inner=…&sign=…` to `raw_url` to fetch one entry (AList's `/ae`), so `raw_url` carries no
   * query. ferry serves no single entries (`/d` refuses `inner` with a clear error); with its sign
   * the link downloads the whole archive. Both point where the request came in, as `fs/get`'s do.
   */
  route('/api/fs/archive/meta', async (request, principal) => {
    const { virtual, listing } = await readListing(request, principal);
    return {
      comment: listing.comment,
      encrypted: listing.encrypted,
      content: buildTree(listing.entries).get('/') ?? [],
      sort: { order_by: '', order_direction: '', extract_folder: '' },
      raw_url: `${publicOrigin(request)}${app.prefix}/d${encodePath(virtual)}`,
      sign: links.sign(virtual),
    };
  });

  route('/api/fs/archive/list', async (request, principal) => {
    const { b, listing } = await readListing(request, principal);
    const inner = normalizePath(b.inner_path ?? '/');
    const tree = buildTree(listing.entries);
    const content = tree.get(inner);
    if (!content) throw new FerryError('E_NOT_FOUND', `not a folder in the archive: ${inner}`);
    const flat = content.map(({ children: _, ...obj }) => obj);
    const perPage = Math.max(0, Number(b.per_page) || 0);
    const page = Math.max(1, Number(b.page) || 1);
    return {
      content: perPage ? flat.slice((page - 1) * perPage, page * perPage) : flat,
      total: flat.length,
    };
  });

  route('/api/fs/archive/decompress', async (request, principal) => {
    need(principal, 'DECOMPRESS');
    const b = body(request);
    const srcDir = toVirtual(principal, b.src_dir);
    const dstDir = toVirtual(principal, b.dst_dir);
    // AList took one `name` before taking a list.
    const rawNames = typeof b.name === 'string' ? [b.name] : b.name;
    if (!Array.isArray(rawNames) || rawNames.length === 0)
      throw new FerryError('E_BAD_REQUEST', 'name must be a non-empty array');
    if (rawNames.length > MAX_NAMES)
      throw new FerryError('E_BAD_REQUEST', `at most ${MAX_NAMES} names at once`);
    const dst = mounts.resolve(dstDir);
    const dstEntry = await dst.driver.stat(dst.path);
    if (dstEntry && !dstEntry.isDir) throw new FerryError('E_NOT_A_DIRECTORY', 'dst_dir is not a folder');
    const options = {
      password: archivePassword(b),
      innerPath: normalizePath(b.inner_path ?? '/'),
      putIntoNewDir: b.put_into_new_dir === true,
      overwrite: b.overwrite === true,
    };
    const specs = await mapLimit(rawNames.map(checkName), 16, (name) =>
      decompressSpec(mounts, principal, { src: joinPath(srcDir, name), dstDir, ...options }),
    );
    const created = await tasks.create(principal, specs);
    return { tasks: created.map((t) => alistTask(t, flavourOf(request))) };
  });
}

/**
 * Check one archive and describe its decompress task. `E_NOT_FOUND` for a missing archive,
 * `E_ARCHIVE_FORMAT` for a name ferry cannot read. The name follows the seed:
 * `decompress [<mount>](<path>)[<inner path>] to [<mount>](<path>) with password <<password>>`
 * (the angle brackets are written, as AList writes them and the OpenList UI parses them). The
 * password shows in the name as in AList: only its creator and admins ever see a task, and the
 * task keeps the password anyway, to extract (and retry) without asking again.
 */
async function decompressSpec(
  mounts: MountRegistry,
  principal: Principal,
  req: {
    src: string;
    dstDir: string;
    password: string;
    innerPath: string;
    putIntoNewDir: boolean;
    overwrite: boolean;
  },
): Promise<CreateTask> {
  const src = mounts.resolve(req.src);
  const dst = mounts.resolve(req.dstDir);
  const entry = await src.driver.stat(src.path);
  if (!entry) throw new FerryError('E_NOT_FOUND', `not found: ${relativeTo(req.src, principal.basePath)}`);
  if (entry.isDir)
    throw new FerryError('E_IS_A_DIRECTORY', `not an archive but a folder: ${baseName(req.src)}`);
  if (!formatOf(baseName(src.path)))
    throw new FerryError('E_ARCHIVE_FORMAT', `not an archive ferry can read: ${baseName(src.path)}`);
  return {
    kind: 'decompress',
    name: `decompress ${bracketed(src.mountPath, src.path)}[${req.innerPath}] to ${bracketed(dst.mountPath, dst.path)} with password <${req.password}>`,
    payload: { ...req },
    totalBytes: 0,
  };
}
