import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { FerryError } from '../../errors.ts';
import { PartBuffers } from '../../io/part-buffers.ts';
import type { ReadInto, WriteOptions } from '../driver.ts';
import { failedRequest, toFerry } from './errors.ts';

/*
 * How bytes become an S3 object: one PutObject below one part, else a multipart upload that is
 * completed only when every part is there and aborted otherwise, so no partial object ever
 * appears under its key. `path` in every signature names the object in errors.
 */

/**
 * Multipart part size: S3's minimum (5 MiB) unless the file is so large that 10,000 parts (S3's
 * maximum) would not hold it. Four parts are in flight, so memory stays near 4 × 5 MiB.
 */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** Parts in flight at once, for both kinds of upload (rclone's default too). */
const PARTS_IN_FLIGHT = 4;
/**
 * Part buffers of every ranged upload of the process, eight 5 MiB parts at most (or one larger
 * part): a tree of mid-size files uploaded several at a time holds no more than that.
 */
const PART_BUFFERS = new PartBuffers(8 * 5 * 1024 * 1024);
/** Tries per part of a ranged upload. */
const PART_TRIES = 3;

/** The object an upload writes. */
export interface Target {
  Bucket: string;
  Key: string;
}

function partSizeFor(size: number | undefined): number {
  if (!size) return MIN_PART_SIZE;
  const MiB = 1024 * 1024;
  return Math.max(MIN_PART_SIZE, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/**
 * Upload a stream: a file smaller than one part (by `options.size`) as one PutObject, anything
 * else through lib-storage's `Upload` (multipart, four parts in flight, aborted on failure or
 * cancel).
 */
export async function uploadStream(
  client: S3Client,
  target: Target,
  path: string,
  source: Readable,
  options: WriteOptions,
): Promise<void> {
  if (options.size !== undefined && options.size < MIN_PART_SIZE)
    return putSmall(client, target, path, source, { ...options, size: options.size });
  const upload = new Upload({
    client: options.beforePlace ? placingGuarded(client, options.beforePlace) : client,
    params: { ...target, Body: source },
    partSize: partSizeFor(options.size),
    queueSize: PARTS_IN_FLIGHT,
    leavePartsOnError: false,
  });
  let reported = 0;
  upload.on('httpUploadProgress', (progress) => {
    const loaded = progress.loaded ?? 0;
    if (loaded > reported) {
      options.onProgress?.(loaded - reported);
      reported = loaded;
    }
  });
  const abort = () => void upload.abort().catch(() => undefined);
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    options.signal?.throwIfAborted();
    await upload.done();
  } catch (err) {
    source.destroy();
    throw failedRequest(err, path, options.signal);
  } finally {
    options.signal?.removeEventListener('abort', abort);
  }
}

/**
 * `client` for lib-storage's `Upload`, awaiting `beforePlace` before the request that places the
 * object: CompleteMultipartUpload, or the one PutObject of a stream that fit in one part. When it
 * throws, `Upload` aborts the multipart upload as on any failed completion.
 */
function placingGuarded(client: S3Client, beforePlace: () => Promise<void>): S3Client {
  const send = async (...args: Parameters<S3Client['send']>) => {
    const [command] = args;
    if (command instanceof CompleteMultipartUploadCommand || command instanceof PutObjectCommand)
      await beforePlace();
    return client.send(...args);
  };
  return new Proxy(client, {
    get: (target, key) => (key === 'send' ? send : Reflect.get(target, key, target)),
  });
}

/**
 * A file smaller than one part: its bytes are read into memory, then sent as one PutObject with
 * its length, which the SDK can send again when it fails (a streamed body it cannot), without
 * lib-storage's buffering and bookkeeping around a single request. A source that does not hold
 * `size` bytes fails without writing anything.
 */
async function putSmall(
  client: S3Client,
  target: Target,
  path: string,
  source: Readable,
  options: WriteOptions & { size: number },
): Promise<void> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of source) {
      options.signal?.throwIfAborted();
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length > options.size) break;
    }
    if (length !== options.size)
      throw new FerryError('E_BACKEND', `${path}: the source gave ${length} bytes, not ${options.size}`);
  } catch (err) {
    source.destroy();
    throw failedRequest(err, path, options.signal);
  }
  // The PutObject is what places the object.
  await options.beforePlace?.();
  await putBody(client, target, path, Buffer.concat(chunks, length), options.signal);
  options.onProgress?.(length);
}

/** One PutObject of `body`, with its length: the SDK can send it again when a request fails. */
export async function putBody(
  client: S3Client,
  target: Target,
  path: string,
  body: Buffer,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await client.send(new PutObjectCommand({ ...target, Body: body, ContentLength: body.length }), {
      ...(signal && { abortSignal: signal }),
    });
  } catch (err) {
    throw failedRequest(err, path, signal);
  }
}

/**
 * A multipart upload whose parts are read from the source's ranges, four at a time, into
 * buffers reused from part to part and shared by all uploads (lib-storage's `Upload` allocates
 * each part, and copies it again as it sends it). A failed part is read and sent again, up to
 * three times. Completed only when every part is there; aborted otherwise. A file smaller than
 * one part goes as one PutObject.
 */
export async function uploadRanges(
  client: S3Client,
  target: Target,
  path: string,
  size: number,
  readInto: ReadInto,
  options: WriteOptions,
): Promise<void> {
  const { signal } = options;
  if (size < MIN_PART_SIZE) {
    // One request, as a small stream goes (see putSmall).
    const body = Buffer.allocUnsafe(size);
    await readInto(0, body, signal).catch((err: unknown) => {
      throw failedRequest(err, path, signal);
    });
    await options.beforePlace?.();
    await putBody(client, target, path, body, signal);
    options.onProgress?.(size);
    return;
  }
  let UploadId: string | undefined;
  try {
    ({ UploadId } = await client.send(new CreateMultipartUploadCommand(target), {
      ...(signal && { abortSignal: signal }),
    }));
  } catch (err) {
    throw toFerry(err, path);
  }
  // The first part to fail for good stops the others.
  const stop = new AbortController();
  const stopped = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const partSize = partSizeFor(size);
  const count = Math.ceil(size / partSize);
  const etags: string[] = [];
  // Each part is read into a buffer from PART_BUFFERS, given back for the next part once its
  // request has ended (the server answered). A stream per part would allocate a buffer per chunk
  // instead, garbage that waits for collection: tens of megabytes of resident memory at S3
  // speeds. The buffers' budget is shared by all uploads: parts wait for a buffer when spent.
  const workers = Math.min(PARTS_IN_FLIGHT, count);
  const sendPart = async (index: number, buffer: Buffer) => {
    const start = index * partSize;
    const end = Math.min(start + partSize, size) - 1;
    const part = buffer.subarray(0, end - start + 1);
    let filled = false;
    for (let attempt = 1; ; attempt++) {
      try {
        if (!filled) {
          await readInto(start, part, stopped);
          filled = true;
        }
        const sent = await client.send(
          new UploadPartCommand({
            ...target,
            UploadId,
            PartNumber: index + 1,
            // As a stream, so the signature covers no payload hash, as for any streamed
            // body: hashing 5 MiB would hold the event loop for milliseconds per part.
            Body: Readable.from([part]),
            ContentLength: part.length,
          }),
          { abortSignal: stopped },
        );
        etags[index] = sent.ETag ?? '';
        options.onProgress?.(part.length);
        return;
      } catch (err) {
        if (stopped.aborted || attempt >= PART_TRIES) throw err;
      }
    }
  };
  let next = 0;
  const worker = async () => {
    try {
      while (next < count) {
        const index = next++;
        const buffer = await PART_BUFFERS.take(partSize, stopped);
        try {
          await sendPart(index, buffer);
        } catch (err) {
          // An aborted request may still be writing it out: it is not reused.
          PART_BUFFERS.forget(buffer);
          throw err;
        }
        PART_BUFFERS.give(buffer);
      }
    } catch (err) {
      stop.abort(err);
      throw err;
    }
  };
  try {
    const results = await Promise.allSettled(Array.from({ length: workers }, worker));
    signal?.throwIfAborted();
    if (results.some((r) => r.status === 'rejected')) throw stop.signal.reason;
    await options.beforePlace?.();
    await client.send(
      new CompleteMultipartUploadCommand({
        ...target,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
  } catch (err) {
    const abort = client
      .send(new AbortMultipartUploadCommand({ ...target, UploadId }))
      .catch(() => undefined);
    // A cancel answers at once; the parts already sent go a round trip later.
    if (signal?.aborted) throw new FerryError('E_CANCELED', 'canceled', { cause: err });
    await abort;
    throw toFerry(err, path);
  }
}
