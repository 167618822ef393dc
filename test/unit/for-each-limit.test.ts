import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forEachLimit } from '../../src/tasks/kinds/transfer.ts';

describe('forEachLimit', () => {
  it('runs at most `limit` at once and rethrows the first failure after the rest ended', async () => {
    let running = 0;
    let most = 0;
    const ended: number[] = [];
    const work = async (n: number) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, n === 2 ? 1 : 10));
      running--;
      ended.push(n);
      if (n === 2) throw new Error('two failed');
    };
    await assert.rejects(forEachLimit([1, 2, 3, 4, 5], 3, new AbortController().signal, work), /two failed/);
    assert.equal(most, 3);
    assert.equal(running, 0, 'nothing still running when it settled');
  });

  it('does not settle while work runs when the source throws (a walk stopped by a cancel)', async () => {
    let finished = false;
    async function* source() {
      yield 1;
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('walk stopped');
    }
    const work = async () => {
      await new Promise((r) => setTimeout(r, 50));
      finished = true;
    };
    await assert.rejects(forEachLimit(source(), 8, new AbortController().signal, work), /walk stopped/);
    assert.equal(finished, true, 'the item taken before the walk stopped had ended');
  });
});
