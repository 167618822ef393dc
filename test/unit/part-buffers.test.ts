import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PartBuffers } from '../../src/io/part-buffers.ts';

const MiB = 1024 * 1024;

describe('PartBuffers', () => {
  it('hands out buffers within its budget; a taker waits for a give, then reuses that buffer', async () => {
    const pool = new PartBuffers(10 * MiB);
    const a = await pool.take(5 * MiB);
    const b = await pool.take(5 * MiB);
    assert.equal(a.length, 5 * MiB);
    let third: Buffer | null = null;
    const waiting = pool.take(5 * MiB).then((buf) => {
      third = buf;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(third, null, 'a third 5 MiB buffer went past the 10 MiB budget');
    pool.give(a);
    await waiting;
    assert.equal(third, a, 'the given buffer is reused');
    assert.equal(pool.lentBytes, 10 * MiB);
    pool.give(b);
    pool.give(third as unknown as Buffer);
    assert.equal(pool.lentBytes, 0);
  });

  it('lets one buffer larger than the budget go, alone', async () => {
    const pool = new PartBuffers(4 * MiB);
    const big = await pool.take(6 * MiB);
    let next = false;
    const waiting = pool.take(1 * MiB).then(() => {
      next = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(next, false);
    pool.give(big);
    await waiting;
    assert.equal(next, true);
  });

  it('a canceled wait rejects at once and takes nothing', async () => {
    const pool = new PartBuffers(5 * MiB);
    const held = await pool.take(5 * MiB);
    const abort = new AbortController();
    const waiting = pool.take(5 * MiB, abort.signal);
    abort.abort();
    await assert.rejects(waiting, { code: 'E_CANCELED' });
    pool.give(held);
    assert.equal(pool.lentBytes, 0);
  });

  it('a forgotten buffer frees its budget but is never handed out again', async () => {
    const pool = new PartBuffers(5 * MiB);
    const lost = await pool.take(5 * MiB);
    pool.forget(lost);
    const next = await pool.take(5 * MiB);
    assert.notEqual(next, lost);
    pool.give(next);
  });

  it('gives spare memory back once no buffer has been taken for a while', async () => {
    const pool = new PartBuffers(10 * MiB);
    const a = await pool.take(5 * MiB);
    pool.give(a);
    assert.equal(pool.spareBytes, 5 * MiB);
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal(pool.spareBytes, 0);
    assert.equal(a.length, 0, 'its memory is gone (the buffer is detached)');
  });
});
