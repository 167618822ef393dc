import type { OfflineDownloadConfig } from '../config.ts';
import { HostPolicy } from '../download/url-policy.ts';
import { FerryError } from '../errors.ts';

/**
 * Never a webhook target, whatever the config says: link-local addresses (where cloud metadata
 * services answer) and the metadata hosts clouds publish. Loopback and private networks are
 * allowed: receivers often run beside ferry.
 */
const ALWAYS_DENIED = [
  '169.254.0.0/16',
  'fe80::/10',
  '100.100.100.200',
  'fd00:ec2::254',
  'metadata.google.internal',
];

/**
 * Where webhooks may be sent: the offline download's deny list (its defaults are the same
 * link-local and metadata addresses) plus `ALWAYS_DENIED`; its allow list does not apply, since it
 * is about what users may download, not where an admin's receivers live.
 */
export function webhookHostPolicy(offline: Pick<OfflineDownloadConfig, 'denyHosts'>): HostPolicy {
  return new HostPolicy({ allowHosts: [], denyHosts: [...ALWAYS_DENIED, ...offline.denyHosts] });
}

/** Parse a webhook URL: http(s) with a host, no credentials. `E_BAD_REQUEST` saying what is wrong. */
export function parseWebhookUrl(input: unknown): URL {
  if (typeof input !== 'string' || input.trim() === '')
    throw new FerryError('E_BAD_REQUEST', 'url must be a non-empty string');
  if (input.length > 2048) throw new FerryError('E_BAD_REQUEST', 'url is too long (2048 characters at most)');
  let url: URL;
  try {
    url = new URL(input.trim());
  } catch {
    throw new FerryError('E_BAD_REQUEST', `url is not a URL: ${input.slice(0, 200)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new FerryError('E_BAD_REQUEST', `url must be http:// or https://, not ${url.protocol}`);
  if (url.hostname === '') throw new FerryError('E_BAD_REQUEST', 'url has no host');
  if (url.username || url.password)
    throw new FerryError('E_BAD_REQUEST', 'url must not carry a user or password (use the secret)');
  return url;
}

/**
 * Refuse a target the policy blocks, by name and by what the name resolves to now. A name that
 * does not resolve yet passes: every attempt checks again when it connects.
 */
export async function checkTarget(policy: HostPolicy, url: URL): Promise<void> {
  try {
    await policy.checkResolved(url.hostname);
  } catch (err) {
    if (err instanceof FerryError && err.code === 'E_FORBIDDEN')
      throw new FerryError(
        'E_BAD_REQUEST',
        `webhook url refused: ${err.message.replace(/ is blocked by .*$/, '')} is a link-local or metadata address, or in offlineDownload.denyHosts`,
        { cause: err },
      );
    if (err instanceof FerryError && err.code === 'E_BACKEND') return;
    throw err;
  }
}
