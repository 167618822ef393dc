import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isFerryError } from '../../errors.ts';
import { errorEnvelope } from './envelope.ts';
import { flavourOf } from './flavour.ts';
import { validationMessage } from './validation.ts';

/** What an AList route may say about how its errors are answered (Fastify route `config`). */
export interface AlistRouteConfig {
  /**
   * Downloads (`/d`, `/p`): the HTTP status is the error's (download tools look at it), with the
   * envelope as the body, and headers already set for the file are dropped.
   */
  httpStatus?: boolean;
  /**
   * File reads in the `current` flavour: a missing path is code 500 "object not found", as
   * AList answers and the SDKs' `exists()` reads.
   */
  missingAs500?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** See `AlistRouteConfig.httpStatus`. */
    httpStatus?: boolean;
    /** See `AlistRouteConfig.missingAs500`. */
    missingAs500?: boolean;
  }
}

/**
 * The AList dialect's one error handler: whatever a route throws (ferry's coded errors, a schema's
 * refusal, a JSON parse error) becomes AList's envelope with HTTP 200 and the code in the body; a
 * 5xx is logged and shows no details.
 */
export function alistErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const config: AlistRouteConfig = request.routeOptions.config ?? {};
  if (
    config.missingAs500 &&
    flavourOf(request) === 'current' &&
    (isFerryError(err, 'E_NOT_FOUND') || isFerryError(err, 'E_NO_STORAGE'))
  ) {
    const message = isFerryError(err, 'E_NOT_FOUND') ? 'object not found' : (err as Error).message;
    return reply.code(200).send({ code: 500, message, data: null });
  }
  const envelope = err.validation
    ? { code: 400, message: validationMessage(err.validation, err.validationContext ?? 'body'), data: null }
    : errorEnvelope(err);
  if (envelope.code >= 500) request.log.error({ err }, 'request failed');
  if (!config.httpStatus) return reply.code(200).send(envelope);
  for (const header of ['content-disposition', 'content-length', 'content-range', 'content-type'])
    reply.removeHeader(header);
  return reply.code(envelope.code >= 400 && envelope.code < 600 ? envelope.code : 500).send(envelope);
}
