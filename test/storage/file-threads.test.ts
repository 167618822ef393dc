import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileThreads } from '../../src/storage/local/file-threads.ts';

describe('small-file threads', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-file-threads-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('keep the memory of finished writes for the next ones, and give it back once idle', async () => {
    const threads = new FileThreads(100);
    const data = threads.buffer(1024 * 1024);
    data.fill(7);
    await threads.write(join(dir, 'a.tmp'), join(dir, 'a.bin'), data, { overwrite: false });
    assert.equal((await readFile(join(dir, 'a.bin'))).length, 1024 * 1024);
    // The buffer came back from the thread and is kept for the next write.
    assert.ok(threads.pooledBytes >= 1024 * 1024, `${threads.pooledBytes} bytes kept`);
    const again = threads.buffer(1024 * 1024);
    assert.equal(threads.pooledBytes, 0, 'the kept memory was handed out again');
    await threads.write(join(dir, 'b.tmp'), join(dir, 'b.bin'), again, { overwrite: false });
    assert.ok(threads.pooledBytes >= 1024 * 1024);
    const held = process.memoryUsage().arrayBuffers;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(threads.pooledBytes, 0, 'idle threads keep no memory');
    // Given back to the system at once, not left for a garbage collection minutes later.
    const freed = held - process.memoryUsage().arrayBuffers;
    assert.ok(freed >= 1024 * 1024, `${freed} bytes of ArrayBuffers freed`);
  });
});
