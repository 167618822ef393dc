import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request a receiver got, with whether its signature checked out. */
export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  json: { id: string; event: string; created_at: string; task: Record<string, unknown> | null } & Record<
    string,
    unknown
  >;
  /** `X-Ferry-Signature` is HMAC-SHA256(secret, timestamp + "." + raw body), checked here on its own. */
  signatureValid: boolean;
  /** What the receiver answered (status), or null when it never answered. */
  answered: number | null;
}

/**
 * A webhook receiver on loopback, as a user would write one: reads the raw body, checks the
 * signature with the shared secret (computed here, not with ferry's code), answers with what
 * `answer` says for the n-th request (a status, or 'hang' to never answer).
 */
export async function startReceiver(
  secret: string,
  answer: (n: number, req: Received) => number | 'hang' = () => 200,
) {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const timestamp = String(req.headers['x-ferry-timestamp'] ?? '');
      const expected = Buffer.from(
        `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`,
      );
      const given = Buffer.from(String(req.headers['x-ferry-signature'] ?? ''));
      const entry: Received = {
        headers: req.headers,
        body,
        json: JSON.parse(body),
        signatureValid: expected.length === given.length && timingSafeEqual(expected, given),
        answered: null,
      };
      received.push(entry);
      const status = answer(received.length, entry);
      if (status === 'hang') {
        hanging.push(res);
        return;
      }
      entry.answered = status;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'receiver says no');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
