import type { FastifyInstance } from 'fastify';
import type { Found } from '../../files/file-service.ts';
import { childPath } from '../../files/user-path.ts';
import { parentPath } from '../../storage/paths.ts';
import { principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import type { AlistRouteConfig } from './error-handler.ts';
import { OBJ_TYPE, type ObjView, objType, objView } from './obj-view.ts';
import { encodePath, publicOrigin } from './public-origin.ts';
import { envelope, objectBody, PAGING, PATH } from './schemas.ts';

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
export async function alistFsReadRoutes(app: FastifyInstance): Promise<void> {
  const { files } = app.core;
  /**
   * raw_url points at the prefix this route was reached through (`/@openlist/d/…` for the web UI,
   * `/d/…` at the root): the same bytes either way, but a reverse proxy that only forwards the
   * prefix the client uses forwards the link too, and it is the form the web UI builds itself.
   */
  const downloadBase = `${app.prefix}/d`;
  const config: AlistRouteConfig = { missingAs500: true };
  const tags = ['alist fs'];
  const password = { type: 'string', description: "AList's folder password: ferry has none and ignores it" };

  /**
   * Files next to `found` whose names start with its name without the extension (`film.srt` for
   * `film.mp4`): AList's `related`, which the web UI's video preview takes subtitles and danmaku
   * from. null when there are none or the folder cannot be listed, as AList answers. Only videos
   * get them: nothing else reads them, and listing the folder on every `fs/get` (the SDKs'
   * `exists()` calls it for each path) would cost a listing of a possibly huge folder each time.
   */
  const relatedTo = async (found: Found): Promise<ObjView[] | null> => {
    if (objType(found.facts.name, found.facts.isDir) !== OBJ_TYPE.VIDEO) return null;
    const dir = parentPath(found.path);
    const related = await files.siblingsOf(found);
    return related.length ? related.map((e) => objView(e, files.sign(childPath(dir, e.name)))) : null;
  };

  app.post<{ Body: { path?: string; page?: number; per_page?: number } }>(
    '/api/fs/list',
    {
      config,
      schema: {
        tags,
        body: objectBody({ path: PATH, password, refresh: { type: 'boolean' }, ...PAGING }),
        response: envelope('`{content: [obj], total, readme, header, write, provider}`'),
      },
    },
    async (request) => {
      const principal = await principalOf(request);
      const b = request.body;
      const folder = await files.list(principal, b.path);
      const perPage = Math.max(0, b.per_page ?? 0);
      const page = Math.max(1, b.page ?? 1);
      const slice = perPage ? folder.entries.slice((page - 1) * perPage, page * perPage) : folder.entries;
      return ok({
        content: slice.map((e) => objView(e, e.isDir ? '' : files.sign(childPath(folder.path, e.name)))),
        total: folder.entries.length,
        readme: '',
        header: '',
        write: files.canWrite(principal),
        provider: folder.provider,
      });
    },
  );

  app.post<{ Body: { path?: string } }>(
    '/api/fs/get',
    {
      config,
      schema: {
        tags,
        body: objectBody({ path: PATH, password }),
        response: envelope('one object: `{name, size, is_dir, …, raw_url, provider, related}`'),
      },
    },
    async (request) => {
      const found = await files.get(await principalOf(request), request.body.path);
      const sign = found.facts.isDir ? '' : files.sign(found.path);
      return ok({
        ...objView(found.facts, sign),
        raw_url: found.facts.isDir
          ? ''
          : `${publicOrigin(request)}${downloadBase}${encodePath(found.path)}?sign=${sign}`,
        readme: '',
        header: '',
        provider: found.provider,
        related: await relatedTo(found),
      });
    },
  );

  /**
   * The folders in `path`, for the web UI's folder picker (copy, move, decompress, offline
   * download targets): `[{name, modified}]`, folders leading to mounts included. With
   * `force_root` an admin names a path from the root of the tree rather than below its base path
   * (AList's `FsDirs`); anyone else is refused. `password` (AList's folder passwords) is ignored:
   * ferry has none.
   */
  app.post<{ Body: { path?: string; force_root?: boolean } }>(
    '/api/fs/dirs',
    {
      config,
      schema: {
        tags,
        body: objectBody({ path: PATH, password, force_root: { type: 'boolean' } }),
        response: envelope('`[{name, modified}]`'),
      },
    },
    async (request) => {
      const dirs = await files.dirs(
        await principalOf(request),
        request.body.path,
        request.body.force_root === true,
      );
      return ok(dirs.map((e) => ({ name: e.name, modified: new Date(e.modified).toISOString() })));
    },
  );
}
