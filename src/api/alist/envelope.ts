import { FerryError } from '../../errors.ts';

/** AList's reply envelope. The HTTP status is 200; the outcome is `code`. */
export interface Envelope<T> {
  code: number;
  message: string;
  data: T;
}

export function ok<T>(data: T): Envelope<T> {
  return { code: 200, message: 'success', data };
}

/**
 * Render any error in AList's envelope: ferry's coded errors with their own status and message,
 * Fastify's validation and parse errors as 400, anything else as a 500 without details.
 */
export function errorEnvelope(err: unknown): Envelope<null> {
  if (err instanceof FerryError) {
    const code = err.httpStatus >= 500 && err.code === 'E_INTERNAL' ? 500 : err.httpStatus;
    return { code, message: code === 500 ? 'internal error' : err.message, data: null };
  }
  const e = err as { statusCode?: number; message?: string; validation?: unknown };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { code: e.statusCode, message: e.message ?? 'bad request', data: null };
  }
  return { code: 500, message: 'internal error', data: null };
}
