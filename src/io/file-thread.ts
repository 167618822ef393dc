/**
 * A worker thread that writes or copies whole small files for `FileThreads` (file-threads.ts),
 * which starts it: it writes a file's bytes (or copies a local file) under a temp name and puts
 * the file in place, all with synchronous system calls. Extracting or copying thousands of small
 * files is bound by the cost of each call; made here, one after the other, they need no round trip
 * through libuv's thread pool per call and never block the server's event loop.
 *
 * Messages: `FileRequest` in, one `FileReply` out per request (file-thread-messages.ts).
 */
import { execFile } from 'node:child_process';
import {
  closeSync,
  constants,
  copyFileSync,
  type Dirent,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type {
  FileFailure,
  FileReply,
  FileRequest,
  ListedEntry,
  Placement,
  Staging,
} from './file-thread-messages.ts';

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

const port = parentPort;
if (!port) throw new Error('file-thread.ts runs in a worker thread');

const reply = (message: FileReply) => {
  const buffer = 'buffer' in message ? message.buffer : undefined;
  port.postMessage(message, buffer && buffer.byteLength > 0 ? [buffer] : []);
};

port.on('message', (req: FileRequest) => {
  switch (req.op) {
    case 'write':
    case 'copy':
      return reply(writeOrCopy(req));
    case 'stage':
      return reply({ op: 'each', id: req.id, failures: stage(req.items) });
    case 'place':
      return reply({ op: 'each', id: req.id, failures: req.items.map(placeOrRemove) });
    case 'list':
      return reply(attempt(req.id, () => ({ op: 'listed', id: req.id, entries: list(req.dir) })));
    case 'measure':
      return reply(attempt(req.id, () => ({ op: 'measured', id: req.id, ...measure(req.dir, req.skip) })));
    case 'sync-fs':
      // Spawned from here, not from the server's event loop: a fork of the server costs
      // milliseconds of CPU, and a tree copy needs one every thousand files.
      execFile('sync', ['-f', req.path], (err) =>
        reply(
          err
            ? { op: 'failed', id: req.id, failure: { code: 'EIO', message: err.message } }
            : { op: 'done', id: req.id },
        ),
      );
  }
});

/** The reply `make` builds, or the failure it threw. */
function attempt(id: number, make: () => FileReply): FileReply {
  try {
    return make();
  } catch (err) {
    return { op: 'failed', id, failure: failureOf(err) };
  }
}

function failureOf(err: unknown): FileFailure {
  const e = err as NodeJS.ErrnoException;
  return { code: e.code ?? 'EIO', message: e.message };
}

/** A `write` or `copy`: the file under its temp name, then in place; the temp file goes on failure. */
function writeOrCopy(req: Extract<FileRequest, { op: 'write' | 'copy' }>): FileReply {
  const buffer = req.op === 'write' ? req.buffer : undefined;
  try {
    if (req.op === 'write') writeFile(req.temp, new Uint8Array(req.buffer, 0, req.length), req.sync);
    else copyFile(req.from, req.temp, req.sync);
    place(req);
    return { op: 'done', id: req.id, ...(buffer && { buffer }) };
  } catch (err) {
    removeTemp(req.temp);
    return { op: 'failed', id: req.id, failure: failureOf(err), ...(buffer && { buffer }) };
  }
}

function writeFile(temp: string, data: Uint8Array, sync: boolean): void {
  const fd = openSync(temp, CREATE, 0o666);
  try {
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done);
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaced, never truncated: a leftover temp file is unlinked, never written through. */
function copyFile(from: string, temp: string, sync: boolean): void {
  try {
    copyFileSync(from, temp, constants.COPYFILE_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    unlinkSync(temp);
    copyFileSync(from, temp, constants.COPYFILE_EXCL);
  }
  if (!sync) return;
  const fd = openSync(temp, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Staged copies: neither fsynced nor placed; a failed one's temp file is removed. */
function stage(items: Staging[]): (FileFailure | null)[] {
  return items.map(({ from, temp }) => {
    try {
      // The caller did not look at a staged copy's source: a link there is not followed.
      if (lstatSync(from).isSymbolicLink())
        throw Object.assign(new Error(`a link: ${from}`), { code: 'ELOOP' });
      copyFile(from, temp, false);
      return null;
    } catch (err) {
      removeTemp(temp);
      return failureOf(err);
    }
  });
}

function place({ temp, final, overwrite }: Placement): void {
  if (overwrite) {
    if (lstatSync(final, { throwIfNoEntry: false })?.isDirectory())
      throw Object.assign(new Error('a folder is in the way'), { code: 'EINWAY' });
    renameSync(temp, final);
  } else {
    // link() refuses an existing name atomically, unlike rename().
    linkSync(temp, final);
    unlinkSync(temp);
  }
}

function placeOrRemove(item: Placement): FileFailure | null {
  try {
    place(item);
    return null;
  } catch (err) {
    removeTemp(item.temp);
    return failureOf(err);
  }
}

function removeTemp(temp: string): void {
  try {
    unlinkSync(temp);
  } catch {
    // not there
  }
}

function list(dir: string): ListedEntry[] {
  const entries: ListedEntry[] = [];
  for (const name of readdirSync(dir)) {
    const info = lstatSync(`${dir}/${name}`, { throwIfNoEntry: false });
    if (!info) continue; // gone since the listing
    const isDir = info.isDirectory();
    const isLink = info.isSymbolicLink();
    entries.push({ name, isDir, isLink, size: info.size, mtimeMs: info.mtimeMs });
  }
  return entries;
}

function measure(dir: string, skip: string): { files: number; bytes: number; links: string[] } {
  const measured = { files: 0, bytes: 0, links: [] as string[] };
  // Depth first, with a stack of folders relative to `dir` ('' is `dir` itself).
  const folders = [''];
  for (let rel = folders.pop(); rel !== undefined; rel = folders.pop()) {
    const abs = rel === '' ? dir : `${dir}/${rel}`;
    let listed: Dirent[];
    try {
      listed = readdirSync(abs, { withFileTypes: true });
    } catch (err) {
      // A folder below `dir` that cannot be listed is not counted: the walk that copies or
      // deletes the tree reports it as a failed item and goes on.
      if (rel === '') throw err;
      continue;
    }
    for (const entry of listed) {
      if (entry.name.startsWith(skip)) continue;
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isSymbolicLink()) measured.links.push(path);
      else if (entry.isDirectory()) folders.push(path);
      else {
        const info = lstatSync(`${abs}/${entry.name}`, { throwIfNoEntry: false });
        if (!info) continue; // gone since the listing
        measured.files++;
        measured.bytes += info.size;
      }
    }
  }
  return measured;
}
