import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Keeps the memory of a fast download flat by collecting V8's young generation every 4 MiB of
 * body chunks received, process-wide.
 *
 * Node's HTTP client reads the socket into a new buffer and copies each body chunk into another;
 * both are garbage as soon as the chunk is consumed, but V8 frees them only at its next
 * young-generation collection, and it starts one for this "external" memory only after tens of
 * MB of it piled up: a 1 GiB S3 download by ranges peaked at 40–47 MB above the idle process.
 * Collecting every 4 MiB brings that to about 20 MB, at a fraction of a millisecond each, but only
 * where the chunks die at once: a chunk still held when a collection runs survives it, and after
 * two it is moved to the old generation, which is collected rarely (collecting every 2 MiB
 * while holding chunks until 1 MiB was gathered made the peak higher, not lower). So a caller
 * copies each chunk out (into a buffer of its own, see ChunkWriter) before it calls `received`.
 *
 * Only where it was measured to help: ranges read from drivers whose `youngReadChunks` says so
 * (S3 and WebDAV, both on Node's HTTP client: a 512 MiB WebDAV download peaked at 134–136 MB
 * instead of 151–156; best runs a tenth slower, medians no slower). Not SFTP, whose client holds
 * chunks longer (higher peaks, slower), nor SimpleHttp, whose thread reads into one buffer it
 * keeps (http-get.ts) and makes no garbage per chunk.
 */
const COLLECT_EVERY_BYTES = 4 * 1024 * 1024;

type Collect = (options: { type: 'minor' }) => void;

let collect: Collect | null = null;
let sinceCollect = 0;

/** `bytes` of body chunks were received and are no longer referenced. */
export function received(bytes: number): void {
  sinceCollect += bytes;
  if (sinceCollect < COLLECT_EVERY_BYTES) return;
  sinceCollect = 0;
  collect ??= collector();
  collect({ type: 'minor' });
}

/**
 * V8's `gc()`: the global one when node runs with `--expose-gc`, otherwise exposed now. The flag
 * only adds `gc` to contexts created after it is set, hence the new context; no other global
 * changes.
 */
function collector(): Collect {
  const global = (globalThis as { gc?: Collect }).gc;
  if (global) return global;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as Collect;
}
