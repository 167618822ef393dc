import type { FastifyRequest } from 'fastify';
import { isAdmin, type Principal } from '../auth/roles.ts';
import type { Core } from '../core.ts';
import { FerryError } from '../errors.ts';

declare module 'fastify' {
  interface FastifyInstance {
    core: Core;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * The caller of a request, from the token in `Authorization` (AList sends the bare token;
 * `Bearer <token>` is accepted too, and `Bearer+<token>` as KooDrive's docs spell it). No token
 * means the built-in guest, when enabled.
 */
export async function principalOf(
  request: FastifyRequest,
  header = request.headers.authorization,
): Promise<Principal> {
  if (request.principal) return request.principal;
  request.principal = await request.server.core.auth.authenticate(tokenOf(header));
  return request.principal;
}

/** The caller of a request, who must be an admin (AList's answer otherwise: 403 "You are not an admin"). */
export async function adminOf(request: FastifyRequest): Promise<Principal> {
  const principal = await principalOf(request);
  if (!isAdmin(principal)) throw new FerryError('E_FORBIDDEN', 'You are not an admin');
  return principal;
}

/** The token in an `Authorization` header value (see `principalOf`), or undefined for none. */
export function tokenOf(header: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  return raw?.replace(/^Bearer[\s+]+/i, '').trim() || undefined;
}
