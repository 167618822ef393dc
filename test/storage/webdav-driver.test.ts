import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readdir, readFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebDavDriver, webdavSettings } from '../../src/storage/webdav/webdav-driver.ts';
import { assertFlatRoundTrip } from '../helpers/memory.ts';
import { type RcloneServer, rcloneAvailable, startRclone } from '../helpers/rclone.ts';
import { bytes, codeOf, readAll, runDriverConformance, slowSource } from './driver-conformance.ts';

const available = rcloneAvailable();

let server: RcloneServer;
if (available) {
  before(async () => {
    server = await startRclone('webdav');
  });
  after(() => server.close());
}

const settings = (extra: Record<string, unknown> = {}, on: RcloneServer = server) =>
  webdavSettings({
    address: on.address,
    username: on.username,
    password: on.password,
    vendor: 'other',
    ...extra,
  });

const suite = () => `/suite-${randomBytes(4).toString('hex')}`;

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

if (available) {
  // Each suite under its own folder of the one share (the driver creates its root at open).
  runDriverConformance('WebDav', async () => ({
    driver: await WebDavDriver.open(settings({ root_folder_path: suite() })),
    cleanup: async () => undefined,
  }));
}

describe('WebDav driver', { skip: !available && 'rclone is not installed' }, () => {
  it('reads AList settings and refuses bad ones without echoing secrets', () => {
    const s = webdavSettings({ address: 'https://dav.example.com/remote.php/dav/', password: 'pw' });
    assert.deepEqual(
      [s.address, s.rootFolderPath, s.vendor, s.tlsInsecureSkipVerify],
      ['https://dav.example.com/remote.php/dav', '/', 'other', false],
    );
    assert.equal(
      webdavSettings({ address: 'http://h', tls_insecure_skip_verify: 'true' }).tlsInsecureSkipVerify,
      true,
    );
    for (const bad of [
      {},
      { address: 'not a url' },
      { address: 'ftp://h' },
      { address: 'http://h', vendor: 'dropbox' },
      { address: 'http://h', tls_insecure_skip_verify: 'maybe' },
      { address: 'http://h', root_folder_path: '/a/../..' },
      { address: 'http://h', password: 42 },
    ]) {
      assert.throws(() => webdavSettings(bad), { code: 'E_STORAGE_CONFIG' }, JSON.stringify(bad));
    }
    assert.throws(
      () => webdavSettings({ address: 'http://me:hunter2@h/' }),
      (err: Error & { code?: string }) => err.code === 'E_STORAGE_CONFIG' && !err.message.includes('hunter2'),
    );
  });

  it('refuses a wrong password at open, without the password in the message', async () => {
    const password = 'wrong-secret-Zq7';
    await assert.rejects(WebDavDriver.open(settings({ password })), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'E_STORAGE_CONFIG');
      assert.equal(err.message, 'WebDAV server refused the username or password');
      assert.ok(!err.message.includes(password) && !err.message.includes(server.password));
      return true;
    });
  });

  it('reports an unreachable server at open, naming the address', async () => {
    const address = `http://127.0.0.1:${await closedPort()}`;
    await assert.rejects(WebDavDriver.open(settings({ address })), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'E_STORAGE_CONFIG');
      assert.ok(err.message.includes(address), err.message);
      assert.ok(!err.message.includes(server.password));
      return true;
    });
  });

  it('writes many files at once into folders that do not exist yet (racing MKCOLs)', async () => {
    const d = await WebDavDriver.open(settings({ root_folder_path: suite() }));
    try {
      // Sixteen writes at a time into new nested folders: their MKCOLs of one folder race, and
      // rclone answers a MKCOL that meets another in flight with 423 Locked.
      for (let round = 0; round < 3; round++) {
        const paths = Array.from(
          { length: 200 },
          (_, i) => `/r${round}/f${Math.floor(i / 20)}/x${i % 20}.txt`,
        );
        for (let i = 0; i < paths.length; i += 16)
          await Promise.all(paths.slice(i, i + 16).map((path) => d.write(path, bytes(path))));
        for (const path of paths) assert.equal((await readAll(await d.read(path))).toString(), path);
      }
    } finally {
      await d.close();
    }
  });

  it('keeps a root_folder_path mount inside its folder, whatever the names', async () => {
    const jail = suite();
    const inner = await WebDavDriver.open(settings({ root_folder_path: jail }));
    const onDisk = join(server.root, jail);
    try {
      assert.equal(await codeOf(inner.stat('/../outside')), 'E_PATH_OUTSIDE_ROOT');
      assert.equal(await codeOf(inner.write('/../../escape', bytes('x'))), 'E_PATH_OUTSIDE_ROOT');
      // Backslashes become slashes in URL parsing: they must travel encoded, not as `..` steps.
      const names = ['a\\\\..\\\\..\\\\esc', 'a%20b', '100%', 'x#y?z', ' sp ace ', 'ünï©ødé 文件', "q'(*)!"];
      for (const name of names) {
        await inner.write(`/${name}`, bytes(name));
        assert.equal((await readAll(await inner.read(`/${name}`))).toString(), name);
      }
      assert.deepEqual((await inner.list('/')).map((e) => e.name).sort(), [...names].sort());
      assert.deepEqual((await readdir(onDisk)).sort(), [...names].sort());
      assert.equal(await exists(join(server.root, 'esc')), false);
      await inner.rename('/100%', '/sub/x#y');
      assert.equal((await readFile(join(onDisk, 'sub', 'x#y'))).toString(), '100%');
      // The folder above the mount is untouched and unseen.
      assert.equal((await inner.stat('/'))?.isDir, true);
      assert.equal(await inner.stat(jail), null);
    } finally {
      await inner.close();
    }
  });

  it('deletes its temp file on the server when a write is aborted or its source fails', async () => {
    const jail = suite();
    const driver = await WebDavDriver.open(settings({ root_folder_path: jail }));
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 150);
      const aborted = driver.write('/a/f.bin', slowSource(300), { signal: controller.signal });
      assert.equal(await codeOf(aborted), 'E_CANCELED');
      assert.notEqual(await codeOf(driver.write('/a/g.bin', slowSource(300, 5))), undefined);
      // The listing hides temp names, so look at the disk itself. rclone may commit the partial
      // upload after the driver's first DELETE; its clean-up looks again within 5 s.
      const folder = join(server.root, jail, 'a');
      for (let waited = 0; (await readdir(folder)).length > 0 && waited < 7000; waited += 100)
        await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(await readdir(folder), []);
    } finally {
      await driver.close();
    }
  });

  it('keeps memory flat while writing and reading 256 MiB', async () => {
    const driver = await WebDavDriver.open(settings({ root_folder_path: suite() }));
    try {
      await assertFlatRoundTrip(driver, '/big.bin', 256);
    } finally {
      await driver.remove('/big.bin');
      await driver.close();
    }
  });

  it('fails a write with E_BACKEND when the server dies mid-way, and recovers', async () => {
    const own = await startRclone('webdav');
    const driver = await WebDavDriver.open(settings({ root_folder_path: '/data' }, own));
    try {
      const writing = driver.write('/f.bin', slowSource(300), { tempKey: 'task-1' });
      setTimeout(() => void own.stop(), 300);
      const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 5000));
      assert.equal(await Promise.race([codeOf(writing), timeout]), 'E_BACKEND');
      await own.start();
      assert.equal(await driver.stat('/f.bin'), null);
      assert.deepEqual(await driver.list('/'), []);
      assert.equal(await exists(join(own.root, 'data', 'f.bin')), false);
      await driver.write('/f.bin', bytes('second try'), { tempKey: 'task-1' });
      assert.equal((await readAll(await driver.read('/f.bin'))).toString(), 'second try');
      // The retry reused, and so replaced, the temp name of the interrupted attempt.
      assert.deepEqual(await readdir(join(own.root, 'data')), ['f.bin']);
    } finally {
      await driver.close();
      await own.close();
    }
  });
});

describe('WebDav driver and kept-alive connections', () => {
  it('sends a PROPFIND again when the server closed its kept-alive connection as it went out', async () => {
    // Every second request on a connection finds it closed, as when a server's idle timeout
    // fires just as a request is sent on a reused connection; a new connection is answered.
    const body = (href: string) =>
      `<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>${href}</d:href>` +
      '<d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop>' +
      '<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>';
    let resets = 0;
    const server = createHttpServer((req, res) => {
      const socket = req.socket as typeof req.socket & { served?: number };
      socket.served = (socket.served ?? 0) + 1;
      if (socket.served > 1) {
        resets++;
        socket.destroy();
        return;
      }
      req.resume();
      req.on('end', () => {
        res.writeHead(207, { 'content-type': 'application/xml; charset=utf-8' });
        res.end(body(req.url ?? '/'));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const driver = await WebDavDriver.open(
      webdavSettings({ address: `http://127.0.0.1:${port}`, vendor: 'other' }),
    );
    try {
      for (const path of ['/a', '/b', '/c']) assert.equal((await driver.stat(path))?.isDir, true, path);
      assert.ok(resets > 0, 'no kept-alive connection was reused, so none was reset');
    } finally {
      await driver.close();
      server.closeAllConnections();
      server.close();
    }
  });
});
