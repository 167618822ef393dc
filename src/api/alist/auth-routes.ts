import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { User } from '../../auth/auth-service.ts';
import { isGuest } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import { adminOf, principalOf, tokenOf } from '../context.ts';
import { ok } from './envelope.ts';
import { envelope } from './schemas.ts';

/** What `userView` needs: a stored user, or the principal of a request. */
type UserFields = Pick<User, 'id' | 'username' | 'basePath' | 'role' | 'permission'> & { disabled?: boolean };

/**
 * A user as AList shows it (`model.User` and `/api/me`'s `otp`); the password hash never leaves
 * the server. ferry has no single sign-on, LDAP nor two-factor login: `sso_id` is always "",
 * `allow_ldap` and `otp` false, as AList shows a user who uses none of them.
 */
export function userView(user: UserFields) {
  return {
    id: user.id,
    username: user.username,
    password: '',
    base_path: user.basePath,
    role: user.role,
    disabled: user.disabled === true,
    permission: user.permission,
    sso_id: '',
    allow_ldap: false,
    otp: false,
  };
}

/**
 * An empty page of SSH public keys, in AList's shape. AList keeps keys for its own SFTP server;
 * ferry runs none, so no user has any, and the web UI's key lists show empty.
 */
const NO_SSH_KEYS = { content: [], total: 0 };

/** What a route takes, for its schema; `reply` describes its `data`. */
interface RouteInput {
  body?: object;
  querystring?: object;
  reply?: string;
}

/**
 * A body the handler checks field by field (for AList's own messages): no `type` at the top, so a
 * missing body reaches the handler, which answers for it, as does a field of the wrong type.
 */
const fields = (properties: Record<string, object>) => ({ properties });
// Each field is checked by the auth service, which names what is wrong.
const USER_FIELDS = fields({
  id: { description: 'the user to update' },
  username: { description: 'string' },
  password: { description: 'string; empty keeps the old one on update' },
  base_path: { description: "string: the root of the user's view" },
  role: { description: '0 general, 1 guest, 2 admin' },
  permission: { description: "integer: AList's permission bits" },
  disabled: { description: 'boolean' },
});
const idQuery = (name: string) => ({ type: 'object', properties: { [name]: { type: 'string' } } });
const PAGE_QUERY = {
  type: 'object',
  properties: { page: { type: 'string' }, per_page: { type: 'string' } },
};

/** Login, logout, the caller's profile, and the admin's user management (AList's paths and shapes). */
export async function alistAuthRoutes(app: FastifyInstance): Promise<void> {
  const { auth } = app.core;
  /** A route answering in AList's envelope: `run`'s result as `data`, any error as its code. */
  const route = (
    method: 'GET' | 'POST',
    url: string,
    run: (request: FastifyRequest) => Promise<unknown>,
    input: RouteInput = {},
  ): void => {
    app.route({
      method,
      url,
      schema: { tags: ['alist users'], ...input, response: envelope(input.reply ?? 'data: see AList') },
      handler: async (request) => ok(await run(request)),
    });
  };
  const login = fields({ username: {}, password: {}, otp_code: {} });
  route(
    'POST',
    '/api/auth/login',
    async (request) => {
      const body = bodyOf(request);
      return { token: await auth.login(body.username, body.password) };
    },
    { body: login, reply: '`{token}`' },
  );
  // What the OpenList web UI and today's SDKs use: `password` is AList's static hash of it.
  route(
    'POST',
    '/api/auth/login/hash',
    async (request) => {
      const body = bodyOf(request);
      return { token: await auth.loginHash(body.username, body.password, body.otp_code) };
    },
    { body: login, reply: '`{token}`' },
  );
  // A GET, as AList has it. Without a token (the guest, when enabled) there is nothing to end.
  route('GET', '/api/auth/logout', async (request) => {
    await principalOf(request);
    const token = tokenOf(request.headers.authorization);
    if (token) await auth.logout(token);
    return null;
  });

  route('GET', '/api/me', async (request) => userView(await principalOf(request)));
  route(
    'POST',
    '/api/me/update',
    async (request) => {
      const body = bodyOf(request);
      await auth.updateMe(await principalOf(request), { username: body.username, password: body.password });
      return null;
    },
    { body: fields({ username: {}, password: {} }) },
  );
  route('GET', '/api/me/sshkey/list', async (request) => {
    // AList's answer to a guest here.
    if (isGuest(await principalOf(request))) throw new FerryError('E_UNAUTHORIZED', 'user invalid');
    return NO_SSH_KEYS;
  });
  route(
    'POST',
    '/api/me/sshkey/add',
    async (request) => {
      if (isGuest(await principalOf(request))) throw new FerryError('E_UNAUTHORIZED', 'user invalid');
      throw new FerryError('E_BAD_REQUEST', 'ferry runs no SFTP server: it keeps no SSH keys');
    },
    { body: fields({ title: {}, key: {} }) },
  );

  route(
    'GET',
    '/api/admin/user/list',
    async (request) => {
      await adminOf(request);
      const [users, total] = await Promise.all([auth.listUsers(pageOf(request)), auth.countUsers()]);
      return { content: users.map(userView), total };
    },
    { querystring: PAGE_QUERY, reply: '`{content: [user], total}`' },
  );
  route(
    'GET',
    '/api/admin/user/get',
    async (request) => {
      await adminOf(request);
      return userView(await auth.getUser(idOf(request, 'id')));
    },
    { querystring: idQuery('id'), reply: 'the user' },
  );
  route(
    'POST',
    '/api/admin/user/create',
    async (request) => {
      await adminOf(request);
      return userView(await auth.createUser(bodyOf(request)));
    },
    { body: USER_FIELDS, reply: 'the user' },
  );
  route(
    'POST',
    '/api/admin/user/update',
    async (request) => {
      await adminOf(request);
      const body = bodyOf(request);
      return userView(await auth.updateUser(body.id, body));
    },
    { body: USER_FIELDS, reply: 'the user' },
  );
  route(
    'POST',
    '/api/admin/user/delete',
    async (request) => {
      await adminOf(request);
      const id = Number(
        (request.query as { id?: string }).id ?? (request.body as { id?: unknown } | null)?.id,
      );
      await auth.deleteUser(Number.isInteger(id) ? id : undefined);
      return null;
    },
    { querystring: idQuery('id'), body: fields({ id: {} }) },
  );
  route(
    'GET',
    '/api/admin/user/sshkey/list',
    async (request) => {
      await adminOf(request);
      await auth.getUser(idOf(request, 'uid'));
      return NO_SSH_KEYS;
    },
    { querystring: idQuery('uid'), reply: '`{content: [], total: 0}`' },
  );
  // The users page offers it for every user; with no two-factor login there is nothing to cancel.
  route(
    'POST',
    '/api/admin/user/cancel_2fa',
    async (request) => {
      await adminOf(request);
      await auth.getUser(idOf(request, 'id'));
      return null;
    },
    { querystring: idQuery('id') },
  );
  // AList drops its cached copy of the user. ferry reads users from the store on every request, so
  // there is no copy to drop: the answer only says whether the user exists.
  route(
    'POST',
    '/api/admin/user/del_cache',
    async (request) => {
      await adminOf(request);
      const username = (request.query as Record<string, unknown>).username;
      if (typeof username !== 'string' || username === '')
        throw new FerryError('E_BAD_REQUEST', 'username is required');
      if ((await auth.userIdByName(username)) === null) throw new FerryError('E_NOT_FOUND', 'user not found');
      return null;
    },
    { querystring: idQuery('username') },
  );
}

/** The JSON object body of a request; {} for none or anything else (each field is checked where used). */
function bodyOf(request: FastifyRequest): Record<string, unknown> {
  const body = request.body;
  return typeof body === 'object' && body !== null && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : {};
}

/** A positive integer id from the query string; E_BAD_REQUEST otherwise. */
function idOf(request: FastifyRequest, name: string): number {
  const raw = (request.query as Record<string, unknown>)[name];
  const id = typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : 0;
  if (id <= 0) throw new FerryError('E_BAD_REQUEST', `${name} must be a positive integer`);
  return id;
}

/** Beyond any real count of users; keeps `(page - 1) * perPage` an exact integer. */
const MAX_PAGING = 1_000_000;

/**
 * AList's paging of lists (`page`, `per_page` in the query): page 1 when absent or below 1, every
 * row when `per_page` is absent or below 1; anything but an integer is E_BAD_REQUEST.
 */
function pageOf(request: FastifyRequest): { page: number; perPage: number } | undefined {
  const query = request.query as Record<string, unknown>;
  const int = (name: string): number | undefined => {
    const raw = query[name];
    if (raw === undefined || raw === '') return undefined;
    if (typeof raw !== 'string' || !/^-?\d{1,15}$/.test(raw))
      throw new FerryError('E_BAD_REQUEST', `${name} must be an integer`);
    return Math.min(Number(raw), MAX_PAGING);
  };
  const page = Math.max(1, int('page') ?? 1);
  const perPage = int('per_page') ?? 0;
  return perPage < 1 ? undefined : { page, perPage };
}
