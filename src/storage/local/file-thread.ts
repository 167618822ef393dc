/**
 * The code of a worker thread that writes or copies whole small files for `FileThreads`
 * (file-threads.ts): it writes a file's bytes (or copies a local file) under a temp name and puts
 * the file in place, all with synchronous system calls. Extracting or copying thousands of small
 * files is bound by the cost of each call; made here, one after the other, they need no round trip
 * through libuv's thread pool per call and never block the server's event loop.
 *
 * `fileThread` runs in the thread as source text (`new Worker(source, { eval: true })`), the
 * same under tsx and compiled: it may use nothing from outside its own body, and declares no
 * named inner function (a transpiler may wrap those in helpers of this module).
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
  /** fsync the file before it is put in place. */
  sync: boolean;
  /** Only write the temp file; it is put in place later by a `places` request. */
  stageOnly?: boolean;
  /**
   * When set, nothing is written: these temp files (staged earlier) are put in place, each as a
   * write would be, and the reply tells of each (`failures`).
   */
  places?: { temp: string; final: string; overwrite: boolean }[];
}

/** The outcome; `code` is the failing call's errno code (`EINWAY` for a folder in the way). */
export interface WriteReply {
  id: number;
  code?: string;
  message?: string;
  buffer: ArrayBuffer;
  /** For a `places` request: per file, null when it is in place, else why not. */
  failures?: ({ code: string; message: string } | null)[];
}

export function fileThread(): void {
  const fs = require('node:fs') as typeof import('node:fs');
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const CREATE =
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW;
  parentPort?.on('message', (req: WriteRequest) => {
    let reply: WriteReply = { id: req.id, buffer: req.buffer };
    // Files to put in place: this request's own, or the staged ones it names.
    const places = req.places ?? (req.stageOnly ? [] : [req]);
    try {
      if (req.places) {
        // nothing to write
      } else if (req.copyFrom !== undefined) {
        // Replaced, never truncated: a leftover temp file is unlinked, never written through.
        try {
          fs.copyFileSync(req.copyFrom, req.temp, fs.constants.COPYFILE_EXCL);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          fs.unlinkSync(req.temp);
          fs.copyFileSync(req.copyFrom, req.temp, fs.constants.COPYFILE_EXCL);
        }
        if (req.sync) {
          const fd = fs.openSync(req.temp, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
          try {
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        }
      } else {
        const data = new Uint8Array(req.buffer, 0, req.length);
        const fd = fs.openSync(req.temp, CREATE, 0o666);
        try {
          let done = 0;
          while (done < data.length) done += fs.writeSync(fd, data, done);
          if (req.sync) fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      }
    } catch (err) {
      places.length = 0;
      try {
        fs.unlinkSync(req.temp);
      } catch {
        // not there
      }
      const e = err as NodeJS.ErrnoException;
      reply = { id: req.id, code: e.code ?? 'EIO', message: e.message, buffer: req.buffer };
    }
    const failures: WriteReply['failures'] = [];
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
        failures.push(null);
      } catch (err) {
        try {
          fs.unlinkSync(place.temp);
        } catch {
          // not there
        }
        const e = err as NodeJS.ErrnoException;
        failures.push({ code: e.code ?? 'EIO', message: e.message });
      }
    }
    const own = req.places ? null : failures[0];
    if (own) reply = { id: req.id, ...own, buffer: req.buffer };
    if (req.places) reply.failures = failures;
    parentPort?.postMessage(reply, [reply.buffer]);
  });
}
