import { MessageChannel } from 'node:worker_threads';

/**
 * Give a large buffer's memory back now rather than at the next full garbage collection, which
 * an idle server may not run for minutes: its ArrayBuffer is transferred into a message that is
 * dropped at once, and every view of it becomes empty. Only for a buffer that owns its whole
 * ArrayBuffer (`Buffer.allocUnsafeSlow`) and that no pending I/O still reads or fills: that
 * memory is gone.
 */
export function freeBuffer(buffer: Buffer): void {
  if (buffer.byteOffset !== 0 || buffer.byteLength !== buffer.buffer.byteLength)
    throw new Error('freeBuffer: the buffer shares its memory');
  freeMemory(buffer.buffer as ArrayBuffer);
}

/** `freeBuffer` of an ArrayBuffer itself: every view of it becomes empty. */
export function freeMemory(memory: ArrayBuffer): void {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(memory, [memory]);
  port1.close();
  port2.close();
}
