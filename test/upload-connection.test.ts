import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from 'undici';
import { type Harness, startHarness } from './helpers/harness.ts';

/**
 * Uploads refused before their body was read (no token, no permission, a bad path, an existing
 * file), over real sockets: the keep-alive connection must carry the client's next request, or be
 * closed; never left hanging. The AList SDKs reuse connections, so a hung one stalls them.
 */

const BOUNDARY = 'ferry-test-boundary';

/** A multipart body with one file part of `size` bytes under the field `field`. */
function formBody(size: number, field = 'file'): Buffer {
  return Buffer.concat([
    Buffer.from(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${field}"; filename="a.bin"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    ),
    Buffer.alloc(size, 7),
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}

/** One raw keep-alive connection, with what it has received so far and whether it closed. */
class Connection {
  received = '';
  closed = false;
  private readonly socket: Socket;
  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (d) => {
      this.received += d.toString('latin1');
    });
    this.socket.on('close', () => {
      this.closed = true;
    });
    this.socket.on('error', () => undefined); // a write after the server closed: seen as `closed`
  }
  ready(): Promise<void> {
    return new Promise((resolve) => this.socket.once('connect', () => resolve()));
  }
  send(head: string, body?: Buffer): void {
    this.socket.write(head);
    if (body) this.socket.write(body);
  }
  /** Wait until `received` holds `count` complete replies (or the connection closed), at most `ms`. */
  async replies(count: number, ms: number): Promise<string[]> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !this.closed && splitReplies(this.received).length < count)
      await new Promise((r) => setTimeout(r, 10));
    return splitReplies(this.received);
  }
  destroy(): void {
    this.socket.destroy();
  }
}

/** The complete HTTP replies in `text` (each has a Content-Length). */
function splitReplies(text: string): string[] {
  const replies: string[] = [];
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return replies;
    const length = Number(/content-length: (\d+)/i.exec(rest.slice(0, end))?.[1] ?? 0);
    if (rest.length < end + 4 + length) return replies;
    replies.push(rest.slice(0, end + 4 + length));
    rest = rest.slice(end + 4 + length);
  }
}

const PING = 'GET /ping HTTP/1.1\r\nHost: ferry\r\n\r\n';

describe('uploads refused before their body was read', () => {
  let h: Harness;
  let port: number;
  let readerToken: string;
  before(async () => {
    h = await startHarness();
    readerToken = await h.user('reader', { permission: 0 });
    await writeFile(join(h.dataDir, 'files', 'exists.bin'), 'already here');
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    port = (h.app.server.address() as { port: number }).port;
  });
  after(() => h?.close());

  const head = (route: 'put' | 'form', length: number, headers: Record<string, string>) =>
    `PUT /api/fs/${route} HTTP/1.1\r\nHost: ferry\r\nContent-Length: ${length}\r\n` +
    (route === 'form' ? `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` : '') +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n';

  it('answers the next request on the same connection promptly after a refused upload', async () => {
    const cases: [string, 'put' | 'form', Record<string, string>, number, string?][] = [
      ['an existing file, Overwrite: false', 'form', { Overwrite: 'false' }, 403],
      ['no multipart field "file"', 'form', {}, 400, 'other'],
      ['no token', 'form', { Authorization: '' }, 401],
      ['no write permission', 'form', { Authorization: readerToken }, 403],
      ['an existing file, raw body', 'put', { Overwrite: 'false' }, 403],
      ['a path out of bounds, raw body', 'put', { 'File-Path': encodeURIComponent('/local/../../x') }, 403],
    ];
    for (const [what, route, headers, code, field] of cases) {
      const body = route === 'form' ? formBody(1 << 20, field) : Buffer.alloc(1 << 20, 7);
      const c = new Connection(port);
      await c.ready();
      c.send(
        head(route, body.length, {
          Authorization: h.adminToken,
          'File-Path': encodeURIComponent('/local/exists.bin'),
          ...headers,
        }),
        body,
      );
      c.send(PING);
      const started = Date.now();
      const replies = await c.replies(2, 3000);
      c.destroy();
      assert.equal(replies.length, 2, `${what}: the next request was answered (${replies.length} replies)`);
      assert.match(replies[0] as string, new RegExp(`"code":${code}`), what);
      assert.match(replies[1] as string, /\r\n\r\npong$/, what);
      assert.ok(Date.now() - started < 3000, what);
    }
  });

  it('closes the connection after refusing a body too long to drain, rather than leaving it hung', async () => {
    const c = new Connection(port);
    await c.ready();
    // Only the start of a 64 MiB body: the reply must come without the rest.
    c.send(
      head('form', 64 << 20, {
        Authorization: h.adminToken,
        'File-Path': encodeURIComponent('/local/exists.bin'),
        Overwrite: 'false',
      }),
      formBody(256 << 10).subarray(0, 300 << 10),
    );
    const [reply] = await c.replies(1, 3000);
    assert.match(reply ?? '', /"code":403/);
    assert.match(reply ?? '', /\r\nconnection: close\r\n/i);
    const deadline = Date.now() + 3000;
    while (!c.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(c.closed, 'the server closed the connection');
    c.destroy();
  });

  it('closes a connection whose client stops sending the rest of a refused body', async () => {
    const c = new Connection(port);
    await c.ready();
    c.send(head('put', 1 << 20, { Authorization: '' }), Buffer.alloc(1000));
    const [reply] = await c.replies(1, 3000);
    assert.match(reply ?? '', /"code":401/);
    const deadline = Date.now() + 8000;
    while (!c.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(c.closed, 'the stalled connection was closed');
    c.destroy();
  });

  it('serves an undici client’s next request on its one connection after a refusal', async () => {
    const client = new Client(`http://127.0.0.1:${port}`, { pipelining: 1 });
    let connections = 0;
    client.on('connect', () => {
      connections++;
    });
    try {
      const refused = await client.request({
        method: 'PUT',
        path: '/api/fs/form',
        headers: {
          authorization: h.adminToken,
          'file-path': encodeURIComponent('/local/exists.bin'),
          overwrite: 'false',
          'content-type': `multipart/form-data; boundary=${BOUNDARY}`,
        },
        body: formBody(2 << 20),
      });
      assert.equal(((await refused.body.json()) as { code: number }).code, 403);
      const ping = await client.request({ method: 'GET', path: '/ping', headersTimeout: 3000 });
      assert.equal(await ping.body.text(), 'pong');
      assert.equal(connections, 1);
    } finally {
      await client.close();
    }
  });
});
