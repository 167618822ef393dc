import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isGuest } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import { adminOf, principalOf } from '../context.ts';
import { ok } from './envelope.ts';
import { envelope } from './schemas.ts';

/** Any body, or none. */
const ANY_INPUT = { description: 'ignored' };

/**
 * Answers for the AList features ferry does not have, which the OpenList web UI's pages call all
 * the same: shares, metas (per-folder passwords and readmes), the search index and its scans,
 * SSH keys (for AList's SFTP server), two-factor login, the messenger, the offline tools AList configures at run
 * time, and AList's site token.
 *
 * Why they exist: without a route the UI gets an HTTP 404, which it shows as an error dialog on
 * opening the page. Reads answer as AList does with nothing stored (an empty list, an idle
 * index), so each page shows empty; writes answer code 400 saying ferry has no such feature.
 * Same permissions as AList: shares for any signed-in user but guests, the rest for admins.
 */
export async function alistAbsentFeatureRoutes(app: FastifyInstance): Promise<void> {
  const route = (
    methods: ('GET' | 'POST')[],
    url: string,
    who: 'admin' | 'user',
    run: (request: FastifyRequest) => unknown,
  ) => {
    // One route per method: Fastify takes no body schema on a GET.
    for (const method of methods)
      app.route({
        method,
        url,
        // Whatever a client sends is accepted unread: these routes answer the same to any input.
        schema: {
          tags: ['alist absent features'],
          ...(method === 'POST' && { body: ANY_INPUT }),
          querystring: { type: 'object' },
          response: envelope('empty reads; writes answer code 400'),
        },
        handler: async (request) => {
          const principal = await principalOf(request);
          if (who === 'user' && isGuest(principal)) throw new FerryError('E_GUEST', 'You are a guest');
          if (who === 'admin') await adminOf(request);
          return ok(run(request));
        },
      });
  };
  const absent = (what: string) => () => {
    throw new FerryError('E_BAD_REQUEST', what);
  };
  const empty = () => ({ content: [], total: 0 });

  // Shares.
  route(['GET', 'POST'], '/api/share/list', 'user', empty);
  route(['GET'], '/api/share/get', 'user', absent('share not found'));
  for (const action of ['create', 'update', 'delete', 'enable', 'disable'])
    route(['POST'], `/api/share/${action}`, 'user', absent('ferry has no shares'));

  // Metas.
  route(['GET'], '/api/admin/meta/list', 'admin', empty);
  route(['GET'], '/api/admin/meta/get', 'admin', absent('meta not found'));
  for (const action of ['create', 'update', 'delete'])
    route(['POST'], `/api/admin/meta/${action}`, 'admin', absent('ferry has no metas'));

  // The search index (`search_index` is "none") and its manual scans: idle, with nothing indexed.
  route(['GET'], '/api/admin/index/progress', 'admin', () => ({
    obj_count: 0,
    is_done: true,
    last_done_time: null,
    error: '',
  }));
  for (const action of ['build', 'update', 'stop', 'clear'])
    route(['POST'], `/api/admin/index/${action}`, 'admin', absent('ferry has no search index'));
  route(['GET'], '/api/admin/scan/progress', 'admin', () => ({ obj_count: 0, is_done: true }));
  for (const action of ['start', 'stop'])
    route(['POST'], `/api/admin/scan/${action}`, 'admin', absent('ferry has no search index'));

  // SSH public keys, which log in to AList's SFTP server: the lists (empty) and `add` are in
  // auth-routes.ts beside the users they belong to; deleting has nothing to delete.
  route(['POST'], '/api/me/sshkey/delete', 'user', absent('ferry has no SFTP server to use SSH keys with'));
  route(
    ['POST'],
    '/api/admin/user/sshkey/delete',
    'admin',
    absent('ferry has no SFTP server to use SSH keys with'),
  );

  // Two-factor login: the profile page's "Enable 2FA" opens a page that asks for a secret at once.
  // Saying ferry has none is better than the HTTP 404 the UI would show as a broken page.
  for (const action of ['generate', 'verify'])
    route(['POST'], `/api/auth/2fa/${action}`, 'user', absent('ferry has no two-factor login'));

  // The messenger: AList answers code 404 "no message" while nothing waits to be shown, and the
  // page shows nothing then. Nothing ever waits here.
  app.post(
    '/api/admin/message/get',
    {
      schema: {
        tags: ['alist absent features'],
        body: ANY_INPUT,
        response: envelope('always code 404 "no message"'),
      },
    },
    async (request) => {
      await adminOf(request);
      return { code: 404, message: 'no message', data: null };
    },
  );
  route(['POST'], '/api/admin/message/send', 'admin', absent('nothing in ferry reads messages'));

  // Offline download tools AList sets up from the UI; ferry's aria2 is set in its config file.
  route(['POST'], '/api/admin/setting/set_aria2', 'admin', absent('ferry takes aria2 from its config file'));
  for (const tool of [
    'qbit',
    'transmission',
    '115',
    '115_open',
    '123_pan',
    '123_open',
    'pikpak',
    'thunder',
    'thunderx',
    'thunder_browser',
    'guangyapan',
  ])
    route(
      ['POST'],
      `/api/admin/setting/set_${tool}`,
      'admin',
      absent(`ferry has no ${tool} offline download`),
    );
  route(
    ['POST'],
    '/api/admin/setting/reset_token',
    'admin',
    absent('ferry has no site token; tokens come from /api/auth/login'),
  );
}
