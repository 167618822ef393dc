import { BlockList, isIP } from 'node:net';
import { bareHost } from './url-policy.ts';

/**
 * curl's `no_proxy` rules for SimpleHttp (curl's lib/noproxy.c is the reference): the list `*`
 * alone bypasses the proxy for every host; a name matches itself and its subdomains (`example.com`
 * and `.example.com` both cover `a.example.com`, never `badexample.com`; a trailing dot is
 * ignored); an IP address or CIDR range matches URLs that name an address literally — nothing is
 * resolved to decide. Ports are not part of an entry, as in curl.
 */
export class NoProxy {
  private readonly all: boolean;
  private readonly names: string[] = [];
  private readonly addresses = new BlockList();

  constructor(entries: readonly string[]) {
    this.all = entries.length === 1 && entries[0]?.trim() === '*';
    for (const raw of entries) {
      const entry = raw.trim().toLowerCase();
      if (entry === '' || entry === '*') continue;
      const [base = '', prefix] = entry.split('/');
      const address = bareHost(base);
      const family = isIP(address);
      if (family === 0) {
        const name = entry.replace(/^\*?\./, '').replace(/\.$/, '');
        if (name !== '') this.names.push(name);
        continue;
      }
      const type = family === 6 ? 'ipv6' : 'ipv4';
      const bits = Number(prefix);
      if (prefix === undefined) this.addresses.addAddress(address, type);
      else if (Number.isInteger(bits) && bits >= 0 && bits <= (family === 6 ? 128 : 32))
        this.addresses.addSubnet(address, bits, type);
      // A malformed range matches nothing, as in curl.
    }
  }

  /** True when `hostname` (a URL's, IPv6 in brackets or not) goes straight to the server. */
  bypasses(hostname: string): boolean {
    if (this.all) return true;
    const host = bareHost(hostname).toLowerCase().replace(/\.$/, '');
    const family = isIP(host);
    if (family !== 0) return this.addresses.check(host, family === 6 ? 'ipv6' : 'ipv4');
    return this.names.some((n) => host === n || host.endsWith(`.${n}`));
  }
}
