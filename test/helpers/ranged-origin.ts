import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the origin answered: which file, and the `Range` it asked for (null: the whole file). */
export interface OriginRequest {
  path: string;
  range: string | null;
}

/** An HTTP origin on loopback serving fixed files slowly, with `Range`/`If-Range` as real servers do. */
export interface RangedOrigin {
  base: string;
  /** Every request so far, in order. */
  requests: OriginRequest[];
  /** The bytes `/<name>` serves (deterministic from the name). */
  content(name: string): Buffer;
  close(): Promise<void>;
}

/**
 * Start the origin: `/<name>` is `size` pseudo-random bytes derived from the name, sent
 * `chunk` bytes every `everyMs` ms (a download that takes a while, so a node can die in its
 * middle). A `Range: bytes=N-` request whose `If-Range` matches the ETag gets a 206 of the rest.
 */
export async function startRangedOrigin(options: {
  size: number;
  chunk: number;
  everyMs: number;
}): Promise<RangedOrigin> {
  const cache = new Map<string, Buffer>();
  const content = (name: string) => {
    let data = cache.get(name);
    if (!data) {
      const blocks: Buffer[] = [];
      for (let i = 0; blocks.length * 32 < options.size; i++)
        blocks.push(createHash('sha256').update(`${name}:${i}`).digest());
      data = Buffer.concat(blocks).subarray(0, options.size);
      cache.set(name, data);
    }
    return data;
  };
  const requests: OriginRequest[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const range = typeof req.headers.range === 'string' ? req.headers.range : null;
    requests.push({ path, range });
    const data = content(path.slice(1));
    const etag = `"${createHash('sha1').update(data).digest('hex')}"`;
    const headers = {
      etag,
      'last-modified': new Date(0).toUTCString(),
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    let start = 0;
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    const ifRange = req.headers['if-range'];
    if (m && (ifRange === undefined || ifRange === etag)) start = Number(m[1]);
    if (start > 0) {
      res.writeHead(206, {
        ...headers,
        'content-length': data.length - start,
        'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
      });
    } else res.writeHead(200, { ...headers, 'content-length': data.length });
    let at = start;
    const timer = setInterval(() => {
      if (at >= data.length) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(data.subarray(at, at + options.chunk));
      at += options.chunk;
    }, options.everyMs);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    content,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
