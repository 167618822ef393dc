import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LinkSigner } from '../../src/auth/link-signer.ts';
import { type OpenedDatabase, openDatabase } from '../../src/store/database.ts';

/** The secret of the vectors below, stored as the server stores it (base64url). */
const SECRET = Buffer.from('0123456789abcdef0123456789abcdef').toString('base64url');
/**
 * Signs computed outside ferry, with Python's `hmac` and `base64.urlsafe_b64encode` (which pads
 * as Go's `base64.URLEncoding` does), the way AList's `pkg/sign` computes them.
 */
const VECTORS = [
  ['/local/a b/中.txt', 0, 'EHAG_9FMjc-7pTxUUfGjnEwGbwPV_MtG4iO6po1-9ks=:0'],
  ['/x', 1700000000, 'BmqWJX0vvNQjP1whtFemkWd9JLP3bPT_wjDQrpO_tEQ=:1700000000'],
] as const;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return `${(err as { code?: string }).code}: ${(err as Error).message}`;
  }
}

describe('LinkSigner', () => {
  let dir: string;
  let database: OpenedDatabase;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-links-'));
    database = await openDatabase(`sqlite:${join(dir, 'ferry.db')}`, { synchronous: 'NORMAL' });
  });
  after(async () => {
    await database.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('makes its secret once and keeps it: a link outlives a restart', async () => {
    const first = await LinkSigner.open(database.db);
    const again = await LinkSigner.open(database.db);
    assert.equal(again.sign('/local/f.txt'), first.sign('/local/f.txt'));
    const row = await database.db
      .selectFrom('meta')
      .select('value')
      .where('key', '=', 'link_secret')
      .executeTakeFirstOrThrow();
    assert.equal(Buffer.from(row.value, 'base64url').length, 32);
  });

  it("signs as AList does: padded base64url HMAC-SHA256 of '<path>:<expire>', then ':<expire>'", async () => {
    await database.db.updateTable('meta').set({ value: SECRET }).where('key', '=', 'link_secret').execute();
    const signer = await LinkSigner.open(database.db);
    for (const [path, expire, sign] of VECTORS) {
      assert.equal(signer.signUntil(path, expire), sign);
    }
    assert.equal(signer.sign('/local/a b/中.txt'), VECTORS[0][2], 'no lifetime: expire 0');
    // The never-expiring one verifies, also with the trailing slash some clients add.
    assert.equal(
      codeOf(() => signer.verify('/local/a b/中.txt', VECTORS[0][2])),
      undefined,
    );
    assert.equal(
      codeOf(() => signer.verify('/local/a b/中.txt', `${VECTORS[0][2]}/`)),
      undefined,
    );
    // The other expired in 2023.
    assert.equal(
      codeOf(() => signer.verify('/x', VECTORS[1][2])),
      'E_UNAUTHORIZED: sign expired',
    );
  });

  it('refuses any other path, a changed expiry and malformed signs, with AList’s messages', async () => {
    const signer = await LinkSigner.open(database.db, { expireHours: 1 });
    const sign = signer.sign('/a');
    assert.match(sign, /:\d{10}$/, 'a lifetime sets the expiry');
    assert.equal(
      codeOf(() => signer.verify('/a', sign)),
      undefined,
    );
    const later = Number(sign.slice(sign.lastIndexOf(':') + 1)) + 3600;
    for (const [path, given, message] of [
      ['/a/b', sign, 'sign invalid'],
      ['/', sign, 'sign invalid'],
      ['/A', sign, 'sign invalid'],
      ['/a', sign.replace(/:\d+$/, `:${later}`), 'sign invalid'],
      ['/a', sign.replace(/:\d+$/, ':0'), 'sign invalid'],
      ['/a', sign.replace(/:\d+$/, ''), 'expire missing'],
      ['/a', `${sign.split(':')[0]}:`, 'expire missing'],
      ['/a', `${sign.split(':')[0]}:12x`, 'expire invalid'],
      ['/a', `${sign.split(':')[0]}:-1`, 'expire invalid'],
      ['/a', '', 'expire missing'],
      ['/a', ':0', 'sign invalid'],
    ] as const) {
      assert.equal(
        codeOf(() => signer.verify(path, given)),
        `E_UNAUTHORIZED: ${message}`,
        `${path} ${given}`,
      );
    }
  });
});
