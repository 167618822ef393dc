/**
 * The code of a worker thread that writes or copies whole small files for `FileThreads`
 * (file-threads.ts): it writes a file's bytes (or copies a local file) under a temp name and puts
 * the file in place, all with synchronous system calls. Extracting or copying thousands of small
 * files is bound by the cost of each call; made here, one after the other, they need no round trip
 * through libuv's thread pool per call and never block the server's event loop.
 *
 * `fileThread` runs in the thread as source text (`new Worker(source, { eval: true })`), the
 * same under tsx and in the bundle `npm run build` makes: it may use nothing from outside its own
 * body, and declares no named inner function (a transpiler may wrap those in helpers of this
 * module). Even `require` is not named in it: a bundler rewrites that to a helper of its own,
 * which the thread would not have. The modules it uses come in as arguments
 * (`FILE_THREAD_SOURCE`).
 */

/** One file to write or copy. */
export interface WriteRequest {
  id: number;
  /** Temp name beside `final`; never followed when it is a link. */
  temp: string;
  final: string;
  /** Replace an existing file at `final` (never a folder); otherwise an existing name fails. */
  overwrite: boolean;
  /** The file's bytes: the first `length` bytes of this buffer (transferred, then sent back)... */
  buffer: ArrayBuffer;
  length: number;
  /** ...or, when set, the local file to copy instead (`buffer` is then empty). */
  copyFrom?: string;
  /** fsync the file (each copy of `stages` too) before it is put in place. */
  sync: boolean;
  /**
   * When set, nothing else is done: each local file `from` is copied to its `temp` name, neither
   * fsynced nor put in place (a `places` request does that later); the reply tells of each. A link
   * at `from` is not copied: it fails with `ELOOP`.
   */
  stages?: { from: string; temp: string }[];
  /**
   * When set, nothing else is done: these temp files (staged earlier) are put in place, each as a
   * write would be; the reply tells of each.
   */
  places?: { temp: string; final: string; overwrite: boolean }[];
  /** When set, nothing else is done: the reply lists this folder (`entries`). */
  listDir?: string;
  /**
   * When set, nothing else is done: the reply counts the files below `dir` and their bytes
   * (`measured`), skipping names that start with `skip`; links are not followed but listed.
   */
  measure?: { dir: string; skip: string };
  /**
   * When set, nothing else is done: one `sync -f` of the file system this path is on; the thread
   * goes on with other requests while it runs.
   */
  syncFs?: string;
}

/** A name in a listed folder, from its lstat. */
export interface ListedEntry {
  name: string;
  isDir: boolean;
  /** A symbolic link: the other fields are the link's own. */
  isLink: boolean;
  size: number;
  mtimeMs: number;
}

/** Why a file failed: the failing call's errno code (`EINWAY` for a folder in the way). */
export interface FileFailure {
  code: string;
  message: string;
}

/** The outcome; `code` is the failing call's errno code (`EINWAY` for a folder in the way). */
export interface WriteReply {
  id: number;
  code?: string;
  message?: string;
  buffer: ArrayBuffer;
  /** For a `stages` or `places` request: per file, null when done, else why not. */
  failures?: (FileFailure | null)[];
  /** For a `listDir` request: every name in the folder but those gone before their lstat. */
  entries?: ListedEntry[];
  /** For a `measure` request; `links` are the paths of links met, relative to `dir`. */
  measured?: { files: number; bytes: number; links: string[] };
}

function fileThread(
  fs: typeof import('node:fs'),
  { parentPort }: typeof import('node:worker_threads'),
  { execFile }: typeof import('node:child_process'),
): void {
  const CREATE =
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW;
  parentPort?.on('message', (req: WriteRequest) => {
    if (req.syncFs !== undefined) {
      // Spawned from here, not from the server's event loop: a fork of the server costs
      // milliseconds of CPU, and a tree copy needs one every thousand files.
      execFile('sync', ['-f', req.syncFs], (err) => {
        const reply: WriteReply = { id: req.id, buffer: req.buffer };
        if (err) Object.assign(reply, { code: 'EIO', message: err.message });
        parentPort?.postMessage(reply);
      });
      return;
    }
    if (req.listDir !== undefined) {
      const reply: WriteReply = { id: req.id, buffer: req.buffer, entries: [] };
      try {
        for (const name of fs.readdirSync(req.listDir)) {
          const info = fs.lstatSync(`${req.listDir}/${name}`, { throwIfNoEntry: false });
          if (!info) continue;
          const isDir = info.isDirectory();
          const isLink = info.isSymbolicLink();
          reply.entries?.push({ name, isDir, isLink, size: info.size, mtimeMs: info.mtimeMs });
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        Object.assign(reply, { code: e.code ?? 'EIO', message: e.message, entries: undefined });
      }
      parentPort?.postMessage(reply);
      return;
    }
    if (req.measure !== undefined) {
      const { dir, skip } = req.measure;
      const measured = { files: 0, bytes: 0, links: [] as string[] };
      const reply: WriteReply = { id: req.id, buffer: req.buffer, measured };
      try {
        // Depth first, with a stack of folders relative to `dir` ('' is `dir` itself).
        const folders = [''];
        for (let rel = folders.pop(); rel !== undefined; rel = folders.pop()) {
          const abs = rel === '' ? dir : `${dir}/${rel}`;
          let listed: import('node:fs').Dirent[];
          try {
            listed = fs.readdirSync(abs, { withFileTypes: true });
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
              const info = fs.lstatSync(`${abs}/${entry.name}`, { throwIfNoEntry: false });
              if (!info) continue; // gone since the listing
              measured.files++;
              measured.bytes += info.size;
            }
          }
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        Object.assign(reply, { code: e.code ?? 'EIO', message: e.message, measured: undefined });
      }
      parentPort?.postMessage(reply);
      return;
    }
    const batch = req.stages !== undefined || req.places !== undefined;
    // The request's own file is written from its buffer unless it copies one or is a batch.
    let failure: FileFailure | null = null;
    if (!batch && req.copyFrom === undefined) {
      try {
        const data = new Uint8Array(req.buffer, 0, req.length);
        const fd = fs.openSync(req.temp, CREATE, 0o666);
        try {
          let done = 0;
          while (done < data.length) done += fs.writeSync(fd, data, done);
          if (req.sync) fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        failure = { code: e.code ?? 'EIO', message: e.message };
      }
    }
    // Copies: a batch of staged ones, or the request's own.
    const copies = req.stages ?? (req.copyFrom !== undefined ? [{ from: req.copyFrom, temp: req.temp }] : []);
    const copied: (FileFailure | null)[] = [];
    for (const copy of copies) {
      try {
        // A staged copy's source was not looked at by the caller: a link there is not followed.
        if (req.stages && fs.lstatSync(copy.from).isSymbolicLink())
          throw Object.assign(new Error(`a link: ${copy.from}`), { code: 'ELOOP' });
        // Replaced, never truncated: a leftover temp file is unlinked, never written through.
        try {
          fs.copyFileSync(copy.from, copy.temp, fs.constants.COPYFILE_EXCL);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          fs.unlinkSync(copy.temp);
          fs.copyFileSync(copy.from, copy.temp, fs.constants.COPYFILE_EXCL);
        }
        if (req.sync) {
          const fd = fs.openSync(copy.temp, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
          try {
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        }
        copied.push(null);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        copied.push({ code: e.code ?? 'EIO', message: e.message });
      }
    }
    if (!batch) failure ??= copied[0] ?? null;
    // Then into place: a batch of staged ones, or the request's own once written.
    const places = req.places ?? (batch || failure ? [] : [req]);
    const placed: (FileFailure | null)[] = [];
    for (const place of places) {
      try {
        if (place.overwrite) {
          if (fs.lstatSync(place.final, { throwIfNoEntry: false })?.isDirectory())
            throw Object.assign(new Error('a folder is in the way'), { code: 'EINWAY' });
          fs.renameSync(place.temp, place.final);
        } else {
          // link() refuses an existing name atomically, unlike rename().
          fs.linkSync(place.temp, place.final);
          fs.unlinkSync(place.temp);
        }
        placed.push(null);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        placed.push({ code: e.code ?? 'EIO', message: e.message });
      }
    }
    if (!batch) failure ??= placed[0] ?? null;
    // A temp file that did not make it is removed.
    const left = batch
      ? [...copies.filter((_, i) => copied[i]), ...places.filter((_, i) => placed[i])]
      : failure
        ? [req]
        : [];
    for (const file of left) {
      try {
        fs.unlinkSync(file.temp);
      } catch {
        // not there
      }
    }
    const reply: WriteReply = { id: req.id, buffer: req.buffer };
    if (failure) Object.assign(reply, failure);
    if (batch) reply.failures = req.stages ? copied : placed;
    parentPort?.postMessage(reply, reply.buffer.byteLength > 0 ? [reply.buffer] : []);
  });
}

/** What a small-file thread runs: `fileThread` called with the modules it uses. */
export const FILE_THREAD_SOURCE = `(${fileThread.toString()})(require('node:fs'), require('node:worker_threads'), require('node:child_process'))`;
