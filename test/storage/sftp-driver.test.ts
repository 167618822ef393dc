import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SftpDriver, sftpSettings } from '../../src/storage/sftp/sftp-driver.ts';
import { assertFlatRoundTrip } from '../helpers/memory.ts';
import { type RcloneServer, rcloneAvailable, startRclone } from '../helpers/rclone.ts';
import { sshKeyPair } from '../helpers/ssh-keys.ts';
import { bytes, codeOf, readAll, runDriverConformance, slowSource } from './driver-conformance.ts';

const available = rcloneAvailable();

// A key pair the server accepts as well as the password: the private_key login is tested too.
const keys = sshKeyPair({ passphrase: 'key-pass', cipher: 'aes256-ctr', rounds: 16 });

let server: RcloneServer;
if (available) {
  before(async () => {
    server = await startRclone('sftp', { authorizedKeys: `${keys.public}\n` });
  });
  after(() => server.close());
}

const settings = (extra: Record<string, unknown> = {}, on: RcloneServer = server) =>
  sftpSettings({ address: on.address, username: on.username, password: on.password, ...extra });

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
  runDriverConformance('SFTP', async () => ({
    driver: await SftpDriver.open(settings({ root_folder_path: suite() })),
    cleanup: async () => undefined,
  }));
}

describe('SFTP driver', { skip: !available && 'rclone is not installed' }, () => {
  it('reads AList settings and refuses bad ones without echoing secrets', () => {
    const s = sftpSettings({ address: 'files.example.com:2222', username: 'u', password: 'pw' });
    assert.deepEqual([s.host, s.port, s.rootFolderPath], ['files.example.com', 2222, '/']);
    assert.equal(sftpSettings({ address: 'h', username: 'u', password: 'p' }).port, 22);
    assert.equal(sftpSettings({ address: '[::1]:2022', username: 'u', password: 'p' }).host, '::1');
    for (const bad of [
      {},
      { address: 'h:22', password: 'p' },
      { address: 'h:22', username: 'u' },
      { address: 'h:99999', username: 'u', password: 'p' },
      { address: 'h:22/x y', username: 'u', password: 'p' },
      { address: 'h:22', username: 'u', password: 'p', root_folder_path: '/a/../..' },
    ]) {
      assert.throws(() => sftpSettings(bad), { code: 'E_STORAGE_CONFIG' }, JSON.stringify(bad));
    }
    // A key that needs a passphrase, without one or with a wrong one: refused, key not quoted.
    for (const passphrase of [undefined, 'wrong']) {
      assert.throws(
        () => sftpSettings({ address: 'h', username: 'u', private_key: keys.private, passphrase }),
        (err: Error & { code?: string }) =>
          err.code === 'E_STORAGE_CONFIG' && !err.message.includes(keys.private.split('\n')[1] ?? '§'),
      );
    }
  });

  it('logs in with a private key and passphrase', async () => {
    const driver = await SftpDriver.open(
      sftpSettings({
        address: server.address,
        username: server.username,
        private_key: keys.private,
        passphrase: 'key-pass',
        root_folder_path: suite(),
      }),
    );
    try {
      await driver.write('/k.txt', bytes('by key'));
      assert.equal((await readAll(await driver.read('/k.txt'))).toString(), 'by key');
    } finally {
      await driver.close();
    }
  });

  it('refuses a wrong password at open, without the password in the message', async () => {
    const password = 'wrong-secret-Zq7';
    await assert.rejects(SftpDriver.open(settings({ password })), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'E_STORAGE_CONFIG');
      assert.equal(err.message, 'SFTP server refused the username, password or key');
      assert.ok(!err.message.includes(password) && !err.message.includes(server.password));
      return true;
    });
  });

  it('reports an unreachable server at open, naming the address', async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    await assert.rejects(SftpDriver.open(settings({ address })), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'E_STORAGE_CONFIG');
      assert.ok(err.message.includes(address) && err.message.includes('refused'), err.message);
      return true;
    });
  });

  it('keeps a root_folder_path mount inside its folder, whatever the names', async () => {
    const jail = suite();
    const inner = await SftpDriver.open(settings({ root_folder_path: jail }));
    const onDisk = join(server.root, jail);
    try {
      assert.equal(await codeOf(inner.stat('/../outside')), 'E_PATH_OUTSIDE_ROOT');
      assert.equal(await codeOf(inner.write('/../../escape', bytes('x'))), 'E_PATH_OUTSIDE_ROOT');
      const names = ['a\\..\\..\\esc', 'a%20b', 'x#y?z', ' sp ace ', 'ünï©ødé 文件', "q'(*)!"];
      for (const name of names) {
        await inner.write(`/${name}`, bytes(name));
        assert.equal((await readAll(await inner.read(`/${name}`))).toString(), name);
      }
      assert.deepEqual((await inner.list('/')).map((e) => e.name).sort(), [...names].sort());
      assert.deepEqual((await readdir(onDisk)).sort(), [...names].sort());
      assert.equal(await exists(join(server.root, 'esc')), false);
      await inner.rename('/a%20b', '/sub/x#y');
      assert.equal((await readFile(join(onDisk, 'sub', 'x#y'))).toString(), 'a%20b');
      assert.equal(await inner.stat(jail), null);
    } finally {
      await inner.close();
    }
  });

  it('deletes its temp file on the server when a write is aborted or its source fails', async () => {
    const jail = suite();
    const driver = await SftpDriver.open(settings({ root_folder_path: jail }));
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 150);
      const started = Date.now();
      const aborted = driver.write('/a/f.bin', slowSource(300), { signal: controller.signal });
      assert.equal(await codeOf(aborted), 'E_CANCELED');
      assert.ok(Date.now() - started < 1150, `cancel took ${Date.now() - started} ms`);
      await assert.rejects(driver.write('/a/g.bin', slowSource(300, 5)), /source broke/);
      assert.deepEqual(await readdir(join(server.root, jail, 'a')), []);
    } finally {
      await driver.close();
    }
  });

  it('keeps memory flat while writing and reading 256 MiB', async () => {
    const driver = await SftpDriver.open(settings({ root_folder_path: suite() }));
    try {
      await assertFlatRoundTrip(driver, '/big.bin', 256);
    } finally {
      await driver.remove('/big.bin');
      await driver.close();
    }
  });

  it('fails a write with E_BACKEND when the server dies mid-way, and reconnects after', async () => {
    const own = await startRclone('sftp');
    const driver = await SftpDriver.open(settings({ root_folder_path: '/data' }, own));
    try {
      const writing = driver.write('/f.bin', slowSource(300), { tempKey: 'task-1' });
      setTimeout(() => void own.stop(), 300);
      const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 5000));
      assert.equal(await Promise.race([codeOf(writing), timeout]), 'E_BACKEND');
      assert.equal(await codeOf(driver.stat('/f.bin')), 'E_BACKEND');
      await own.start();
      assert.equal(await driver.stat('/f.bin'), null);
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
