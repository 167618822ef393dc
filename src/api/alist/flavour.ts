import type { FastifyRequest } from 'fastify';
import type { AlistFlavour } from '../../config.ts';

export type { AlistFlavour };

/**
 * The two forms of AList's API that ferry speaks.
 * - `seed`: the contract of `shared/seeds/alist-task-api.md`: a task's `state` is a string
 *   (`"succeeded"`), `status` is ferry's own status line.
 * - `current`: what today's AList and OpenList clients (the OpenList web UI, the SDKs) expect
 *   where it differs from the seed: `state` is tache's number 0–9 in the seed's order, `status`
 *   holds AList's texts, and a few codes follow AList (`fs/get` of a missing path is code 500
 *   "object not found", which the SDKs' `exists()` reads).
 *
 * The root routes speak `config.alistCompat` (`FERRY_ALIST_COMPAT`, default `seed`); the same
 * routes under `CURRENT_PREFIX` always speak `current`, and the web UI ferry serves is pointed
 * there, so it works without any setting.
 *
 * `CURRENT_PREFIX` is where the AList routes (`/api/…`, `/d/…`, `/p/…`) answer in `current`.
 */
export const CURRENT_PREFIX = '/@openlist';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set for every route of the AList dialect by the scope it was registered in. */
    alistFlavour: AlistFlavour;
  }
}

export function flavourOf(request: FastifyRequest): AlistFlavour {
  return request.alistFlavour;
}
