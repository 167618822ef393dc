import type { FastifyRequest } from 'fastify';

/**
 * A host as a URL may carry it: a DNS name or IPv4 address (letters, digits, `-`, `_` as
 * container names have, dot-separated) or a bracketed IPv6 address, with an optional port.
 * Nothing else — no path, query, user info, spaces or second host — so whatever a client puts in
 * a header cannot bend the URL built from it.
 */
const HOST =
  /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*|\[[0-9A-Fa-f:.]{2,45}\])(?::(\d{1,5}))?$/;

/** The first value of a header that may be repeated or hold a comma-separated list. */
function firstValue(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  const first = value?.split(',')[0]?.trim();
  return first || undefined;
}

function validHost(host: string | undefined): string | undefined {
  if (!host || host.length > 300) return undefined;
  const m = HOST.exec(host);
  if (!m || (m[1] !== undefined && Number(m[1]) > 65535)) return undefined;
  return host;
}

/**
 * The origin (`proto://host[:port]`) a client reached ferry at, for the absolute links ferry
 * hands out (`raw_url`). Like AList, a reverse proxy's `X-Forwarded-Proto` and `X-Forwarded-Host`
 * win over the request's own scheme and `Host` (first value of a list). A forwarded value that is
 * not a plain `http`/`https` or `host[:port]` is ignored, and a `Host` that is no host either
 * gives `localhost`: the link may then be wrong for the client, but it is never a URL pointing
 * somewhere the header smuggled in.
 */
export function publicOrigin(request: FastifyRequest): string {
  const forwardedProto = firstValue(request.headers['x-forwarded-proto'])?.toLowerCase();
  const proto = forwardedProto === 'http' || forwardedProto === 'https' ? forwardedProto : request.protocol;
  const host =
    validHost(firstValue(request.headers['x-forwarded-host'])) ??
    validHost(request.headers.host) ??
    'localhost';
  return `${proto}://${host}`;
}

/** A virtual path as a URL path: each segment percent-encoded (as AList's `EncodePath(path, true)`). */
export function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}
