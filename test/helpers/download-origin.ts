import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An HTTP server on loopback that offline downloads fetch from, as a browser test scripts it. */
export interface DownloadOrigin {
  /** `http://127.0.0.1:<port>`. */
  base: string;
  /** While false, `/flaky.bin` answers 404; then it answers "fixed on the second try". */
  flakyFixed: boolean;
  close(): Promise<void>;
}

/**
 * Start the origin: `/flaky.bin` fails until `flakyFixed` (a download to Retry), `/slow.bin`
 * promises 10 MB and dribbles 256 bytes every 100 ms (one that keeps running until canceled),
 * `/streamed.txt` answers at once; anything else is a 404.
 */
export async function startDownloadOrigin(): Promise<DownloadOrigin> {
  const server: Server = createServer((req, res) => {
    if (req.url === '/flaky.bin' && origin.flakyFixed) res.end('fixed on the second try');
    else if (req.url === '/streamed.txt') res.end('streamed straight into the folder');
    else if (req.url === '/slow.bin') {
      res.writeHead(200, { 'content-length': 10 * 1024 * 1024 });
      const timer = setInterval(() => res.write(Buffer.alloc(256, 'x')), 100);
      res.on('close', () => clearInterval(timer));
    } else res.writeHead(404).end('not here');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin: DownloadOrigin = {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    flakyFixed: false,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return origin;
}
