import type { FastifyInstance } from 'fastify';
import type { ArchiveEntry } from '../../archive/index.ts';
import { FerryError } from '../../errors.ts';
import { baseName, normalizePath, parentPath } from '../../storage/paths.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { type ObjView, objView } from './obj-view.ts';
import { encodePath, publicOrigin } from './public-origin.ts';
import { envelope, NAME, names, objectBody, PAGING, PATH } from './schemas.ts';
import { alistTask } from './task-view.ts';

/** Most archive names one decompress request takes. */
const MAX_NAMES = 1000;

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

const ARCHIVE_FIELDS = {
  path: PATH,
  password: { type: 'string', description: "AList's folder password: ferry has none and ignores it" },
  archive_pass: { type: 'string', description: "the archive's password" },
  inner_path: { type: 'string', description: 'a folder inside the archive (default /)' },
} as const;

/** The archive password: AList's `archive_pass`, or `password` as some clients send it. */
function archivePassword(b: { archive_pass?: string; password?: string }): string {
  return b.archive_pass || b.password || '';
}

/**
 * AList's archive endpoints: list or describe an archive's entries without extracting it, and
 * extract archives as `decompress` tasks. The checks and the fetching are the file service's.
 */
export async function alistArchiveRoutes(app: FastifyInstance): Promise<void> {
  const { files, requests, tasks } = app.core;
  const tags = ['alist archive'];
  type ArchiveBody = { path: string; archive_pass?: string; password?: string; inner_path?: string };

  /**
   * `raw_url` is the archive's own download link and `sign` its sign, apart: the web UI appends
   * `?inner=…&sign=…` to `raw_url` to fetch one entry (AList's `/ae`), so `raw_url` carries no
   * query. ferry serves no single entries (`/d` refuses `inner` with a clear error); with its sign
   * the link downloads the whole archive. Both point where the request came in, as `fs/get`'s do.
   */
  app.post<{ Body: ArchiveBody }>(
    '/api/fs/archive/meta',
    {
      schema: {
        tags,
        body: objectBody(ARCHIVE_FIELDS, ['path']),
        response: envelope('`{comment, encrypted, content: [obj with children], sort, raw_url, sign}`'),
      },
    },
    async (request) => {
      const { path, listing } = await files.listArchive(
        await principalOf(request),
        request.body.path,
        archivePassword(request.body),
      );
      return ok({
        comment: listing.comment,
        encrypted: listing.encrypted,
        content: buildTree(listing.entries).get('/') ?? [],
        sort: { order_by: '', order_direction: '', extract_folder: '' },
        raw_url: `${publicOrigin(request)}${app.prefix}/d${encodePath(path)}`,
        sign: files.sign(path),
      });
    },
  );

  app.post<{ Body: ArchiveBody & { page?: number; per_page?: number } }>(
    '/api/fs/archive/list',
    {
      schema: {
        tags,
        body: objectBody({ ...ARCHIVE_FIELDS, ...PAGING }, ['path']),
        response: envelope('`{content: [obj], total}`'),
      },
    },
    async (request) => {
      const b = request.body;
      const { listing } = await files.listArchive(await principalOf(request), b.path, archivePassword(b));
      const inner = normalizePath(b.inner_path ?? '/');
      const content = buildTree(listing.entries).get(inner);
      if (!content) throw new FerryError('E_NOT_FOUND', `not a folder in the archive: ${inner}`);
      const flat = content.map(({ children: _, ...obj }) => obj);
      const perPage = Math.max(0, b.per_page ?? 0);
      const page = Math.max(1, b.page ?? 1);
      return ok({
        content: perPage ? flat.slice((page - 1) * perPage, page * perPage) : flat,
        total: flat.length,
      });
    },
  );

  app.post<{
    Body: {
      src_dir: string;
      dst_dir: string;
      name: string | string[];
      archive_pass?: string;
      password?: string;
      inner_path?: string;
      put_into_new_dir?: boolean;
      overwrite?: boolean;
    };
  }>(
    '/api/fs/archive/decompress',
    {
      schema: {
        tags,
        summary: 'Extract archives in src_dir into dst_dir, one decompress task each',
        body: objectBody(
          {
            src_dir: PATH,
            dst_dir: PATH,
            // AList took one `name` before taking a list.
            name: { anyOf: [NAME, names(MAX_NAMES)] },
            archive_pass: ARCHIVE_FIELDS.archive_pass,
            password: ARCHIVE_FIELDS.password,
            inner_path: ARCHIVE_FIELDS.inner_path,
            put_into_new_dir: { type: 'boolean' },
            overwrite: { type: 'boolean' },
          },
          ['src_dir', 'dst_dir', 'name'],
        ),
        response: envelope("`{tasks: [task]}`: the tasks created, in AList's task shape"),
      },
    },
    async (request) => {
      const principal = await principalOf(request);
      const b = request.body;
      const specs = await requests.decompress(principal, {
        srcDir: b.src_dir,
        names: typeof b.name === 'string' ? [b.name] : b.name,
        dstDir: b.dst_dir,
        password: archivePassword(b),
        innerPath: b.inner_path ?? '/',
        putIntoNewDir: b.put_into_new_dir === true,
        overwrite: b.overwrite === true,
      });
      const created = await tasks.create(principal, specs);
      return ok({ tasks: created.map((t) => alistTask(t, flavourOf(request))) });
    },
  );
}
