import { Agent, type Dispatcher, ProxyAgent } from 'undici';
import type { OfflineDownloadConfig } from '../config.ts';
import { NoProxy } from './no-proxy.ts';
import type { HostPolicy } from './url-policy.ts';

/** The connection a request takes: straight to the server, or through a configured proxy. */
export interface Route {
  dispatcher: Dispatcher;
  /** Through a proxy, which resolves the target's name itself (see `HttpDispatchers`). */
  proxied: boolean;
}

/**
 * SimpleHttp's undici dispatchers, built once from the config: one keep-alive `Agent` for direct
 * connections, and a `ProxyAgent` per configured proxy (`httpProxy`, `httpsProxy`, bypassed for
 * the `noProxy` hosts as curl does).
 *
 * Direct connections resolve names through the host policy's `lookup` (`connect.lookup`), so the
 * address that was checked is the address connected to. undici keeps connections per origin
 * (scheme, host, port), so a connection opened for an allowed name is never reused for another
 * name; reusing it for the same name later is sound, as the check ran when it was opened.
 *
 * Through a proxy, the proxy resolves the target: ferry never learns the address, so the policy
 * can only check the name and literal addresses (`HostPolicy.checkName`, which the caller runs
 * for every hop). The proxy's own address is the operator's choice and is not checked. As curl,
 * http:// URLs go to an http proxy as absolute-URI requests and https:// URLs through a CONNECT
 * tunnel, with TLS to the server end to end.
 */
export class HttpDispatchers {
  private readonly direct: Agent;
  private readonly httpProxy: ProxyAgent | null;
  private readonly httpsProxy: ProxyAgent | null;
  private readonly noProxy: NoProxy;

  constructor(config: OfflineDownloadConfig, policy: HostPolicy) {
    const connect = { timeout: config.connectTimeoutMs };
    this.direct = new Agent({ connect: { ...connect, lookup: policy.lookup } });
    const proxy = (uri: string) =>
      uri === ''
        ? null
        : new ProxyAgent({ uri: proxyUrl(uri), proxyTls: connect, requestTls: connect, proxyTunnel: false });
    this.httpProxy = proxy(config.httpProxy);
    this.httpsProxy = proxy(config.httpsProxy);
    this.noProxy = new NoProxy(config.noProxy);
  }

  /** How to reach `url` (http: or https:). */
  routeOf(url: URL): Route {
    const proxy = url.protocol === 'https:' ? this.httpsProxy : this.httpProxy;
    if (!proxy || this.noProxy.bypasses(url.hostname)) return { dispatcher: this.direct, proxied: false };
    return { dispatcher: proxy, proxied: true };
  }

  /** Drop every connection at once (shutdown, after the running downloads were aborted). */
  async close(): Promise<void> {
    await Promise.all(
      [this.direct, this.httpProxy, this.httpsProxy].map((d) => d?.destroy().catch(() => undefined)),
    );
  }
}

/** A proxy given as `host:port` is an http:// one, as curl assumes. */
export function proxyUrl(value: string): string {
  return value.includes('://') ? value : `http://${value}`;
}
