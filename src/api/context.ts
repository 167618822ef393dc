import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth/roles.ts';
import type { Core } from '../core.ts';

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

/** The token in an `Authorization` header value (see `principalOf`), or undefined for none. */
export function tokenOf(header: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  return raw?.replace(/^Bearer[\s+]+/i, '').trim() || undefined;
}
