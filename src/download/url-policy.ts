import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { OfflineDownloadConfig } from '../config.ts';
import { FerryError } from '../errors.ts';

/** The schemes offline download accepts at all; which tool takes which is `toolAccepts`. */
export const URL_SCHEMES = ['http:', 'https:', 'ftp:', 'magnet:'] as const;

/** The download tools ferry has (AList's names). */
export const TOOLS = ['SimpleHttp', 'aria2'] as const;
export type Tool = (typeof TOOLS)[number];

/**
 * Parse and check one URL for `tool`: only http(s), ftp and magnet links (torrents are http(s)
 * URLs of a `.torrent`, which aria2 follows); SimpleHttp takes http(s) only. `E_BAD_REQUEST`
 * with a message that says which rule was broken.
 */
export function parseDownloadUrl(input: unknown, tool: Tool): URL {
  if (typeof input !== 'string' || input.trim() === '')
    throw new FerryError('E_BAD_REQUEST', 'each url must be a non-empty string');
  if (input.length > 8192) throw new FerryError('E_BAD_REQUEST', 'url is too long');
  let url: URL;
  try {
    url = new URL(input.trim());
  } catch {
    throw new FerryError('E_BAD_REQUEST', `not a URL: ${input.slice(0, 200)}`);
  }
  if (!(URL_SCHEMES as readonly string[]).includes(url.protocol))
    throw new FerryError(
      'E_BAD_REQUEST',
      `unsupported URL scheme ${url.protocol} (allowed: http, https, ftp, magnet)`,
    );
  if (tool === 'SimpleHttp' && url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new FerryError(
      'E_BAD_REQUEST',
      `SimpleHttp downloads http and https only; use aria2 for ${url.protocol}`,
    );
  if (url.protocol !== 'magnet:' && url.hostname === '')
    throw new FerryError('E_BAD_REQUEST', `URL has no host: ${input.slice(0, 200)}`);
  return url;
}

/**
 * Which hosts offline downloads may reach. Names match exactly or as a parent domain
 * (`example.com` covers `a.example.com`); addresses and CIDR ranges are matched on the address
 * the name resolves to, so a DNS name pointing at a blocked address is blocked too.
 */
export class HostPolicy {
  private readonly denyNames: string[] = [];
  private readonly denyAddresses = new BlockList();
  private readonly allowNames: string[] = [];
  private readonly allowAddresses = new BlockList();
  private readonly allowAll: boolean;

  constructor(config: Pick<OfflineDownloadConfig, 'allowHosts' | 'denyHosts'>) {
    for (const entry of config.denyHosts) addRule(entry, this.denyNames, this.denyAddresses);
    for (const entry of config.allowHosts) addRule(entry, this.allowNames, this.allowAddresses);
    this.allowAll = config.allowHosts.length === 0;
  }

  /** `E_FORBIDDEN` when the host name itself is denied (or not allowed, when an allow list exists). */
  checkName(hostname: string): void {
    const host = bareHost(hostname);
    if (isIP(host)) {
      this.checkAddress(host, host);
      return;
    }
    if (matchesName(host, this.denyNames)) throw blocked(host, 'denyHosts');
  }

  /** `E_FORBIDDEN` when `address` (what `hostname` resolved to) may not be reached. */
  checkAddress(address: string, hostname: string): void {
    const ip = unmapped(address);
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    const host = bareHost(hostname);
    if (this.denyAddresses.check(ip, family) || matchesName(host, this.denyNames))
      throw blocked(ip === host ? ip : `${host} (${ip})`, 'denyHosts');
    if (this.allowAll) return;
    if (this.allowAddresses.check(ip, family) || matchesName(host, this.allowNames)) return;
    throw blocked(ip === host ? ip : `${host} (${ip})`, 'allowHosts', 'is not in');
  }

  /**
   * A `lookup` for `net.connect` that refuses blocked addresses: the socket never opens to them.
   * SimpleHttp resolves each hop's host through it and connects only to the addresses it let
   * through, so every connection — every redirect hop too — goes where it was checked.
   */
  readonly lookup = (
    hostname: string,
    options: LookupOptions,
    callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(
      hostname,
      { ...options, all: true },
      (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => {
        if (err) return callback(err, options.all ? [] : '', 0);
        try {
          for (const a of addresses) this.checkAddress(a.address, hostname);
        } catch (refused) {
          return callback(refused as Error, options.all ? [] : '', 0);
        }
        if (options.all) return callback(null, addresses);
        const first = addresses[0];
        if (!first) return callback(new Error(`no address for ${hostname}`), '', 0);
        callback(null, first.address, first.family);
      },
    );
  };

  /** Resolve `hostname` and check every address (for tools that connect by themselves: aria2). */
  async checkResolved(hostname: string): Promise<void> {
    const host = bareHost(hostname);
    this.checkName(host);
    if (isIP(host)) return;
    const addresses = await new Promise<LookupAddress[]>((resolve, reject) =>
      dnsLookup(host, { all: true }, (err, a) => (err ? reject(err) : resolve(a))),
    ).catch((err) => {
      throw new FerryError('E_BACKEND', `cannot resolve ${host}: ${(err as Error).message}`, { cause: err });
    });
    for (const a of addresses) this.checkAddress(a.address, host);
  }
}

function addRule(entry: string, names: string[], addresses: BlockList): void {
  const [base = '', prefix] = entry.trim().split('/');
  const host = bareHost(base).toLowerCase();
  const family = isIP(host);
  if (family === 0) {
    names.push(host.replace(/^\*?\./, ''));
    return;
  }
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (prefix === undefined) addresses.addAddress(host, type);
  else addresses.addSubnet(host, Number(prefix), type);
}

function matchesName(host: string, names: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return names.some((n) => h === n || h.endsWith(`.${n}`));
}

/** A URL's hostname without the brackets of an IPv6 literal: `[::1]` (URL spelling) → `::1`. */
export function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

/** `::ffff:169.254.169.254` is 169.254.169.254: check mapped IPv4 addresses as IPv4. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] ?? address;
}

function blocked(what: string, key: string, verb = 'is blocked by'): FerryError {
  return new FerryError('E_FORBIDDEN', `address ${what} ${verb} offlineDownload.${key}`);
}
