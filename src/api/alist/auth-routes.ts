import type { FastifyInstance } from 'fastify';
import { isAdmin } from '../../auth/roles.ts';
import { FerryError } from '../../errors.ts';
import type { User } from '../../store/user-store.ts';
import { principalOf } from '../context.ts';
import { ok, sendError } from './envelope.ts';

/** A user as AList shows it; the password hash never leaves the server. */
export function userView(user: User) {
  return {
    id: user.id,
    username: user.username,
    password: '',
    base_path: user.basePath,
    role: user.role,
    disabled: user.disabled,
    permission: user.permission,
  };
}

/** Login, the caller's profile, and the admin's user management (AList's paths and shapes). */
export async function alistAuthRoutes(app: FastifyInstance): Promise<void> {
  const { auth } = app.core;

  app.post('/api/auth/login', async (request, reply) => {
    try {
      const body = (request.body ?? {}) as { username?: unknown; password?: unknown };
      return ok({ token: await auth.login(body.username, body.password) });
    } catch (err) {
      return sendError(reply, err);
    }
  });

  app.get('/api/me', async (request, reply) => {
    try {
      const p = await principalOf(request);
      return ok({
        id: p.id,
        username: p.username,
        base_path: p.basePath,
        role: p.role,
        disabled: false,
        permission: p.permission,
      });
    } catch (err) {
      return sendError(reply, err);
    }
  });

  /** Admin-only routes under /api/admin/user/. */
  const admin = async (request: Parameters<typeof principalOf>[0]) => {
    const p = await principalOf(request);
    if (!isAdmin(p)) throw new FerryError('E_FORBIDDEN', 'You are not an admin');
    return p;
  };

  app.get('/api/admin/user/list', async (request, reply) => {
    try {
      await admin(request);
      const users = await auth.listUsers();
      return ok({ content: users.map(userView), total: users.length });
    } catch (err) {
      return sendError(reply, err);
    }
  });

  app.post('/api/admin/user/create', async (request, reply) => {
    try {
      await admin(request);
      const user = await auth.createUser((request.body ?? {}) as Record<string, unknown>);
      return ok(userView(user));
    } catch (err) {
      return sendError(reply, err);
    }
  });

  app.post('/api/admin/user/update', async (request, reply) => {
    try {
      await admin(request);
      const body = (request.body ?? {}) as Record<string, unknown>;
      return ok(userView(await auth.updateUser(body.id, body)));
    } catch (err) {
      return sendError(reply, err);
    }
  });

  app.post('/api/admin/user/delete', async (request, reply) => {
    try {
      await admin(request);
      const id = Number(
        (request.query as { id?: string }).id ?? (request.body as { id?: unknown } | null)?.id,
      );
      await auth.deleteUser(Number.isInteger(id) ? id : undefined);
      return ok(null);
    } catch (err) {
      return sendError(reply, err);
    }
  });
}
