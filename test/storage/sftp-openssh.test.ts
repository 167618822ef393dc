import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SftpDriver, sftpSettings } from '../../src/storage/sftp/sftp-driver.ts';
import { type OpenSshSftpServer, openSshSftpAvailable, startOpenSshSftp } from '../helpers/openssh-sftp.ts';
import { runDriverConformance } from './driver-conformance.ts';

// The SFTP driver against OpenSSH's sftp-server, beside the rclone server of sftp-driver.test.ts:
// the same contract, and what rclone cannot show: symbolic links.
const available = openSshSftpAvailable();

let server: OpenSshSftpServer;
if (available) {
  before(async () => {
    server = await startOpenSshSftp();
  });
  after(() => server.close());
}

/** A driver on a fresh folder of the server (its absolute path on this machine). */
async function open(folder = `suite-${randomBytes(4).toString('hex')}`): Promise<SftpDriver> {
  const root = join(server.root, folder);
  await mkdir(root, { recursive: true });
  return SftpDriver.open(
    sftpSettings({
      address: server.address,
      username: server.username,
      password: server.password,
      root_folder_path: root,
    }),
  );
}

if (available) {
  runDriverConformance('SFTP (OpenSSH sftp-server)', async () => ({
    driver: await open(),
    cleanup: async () => undefined,
  }));
}

describe('SFTP driver on OpenSSH: links', {
  skip: !available && 'openssh-sftp-server is not installed',
}, () => {
  it('shows a link as what it leads to, marked, and removes the link, never what it leads to', async () => {
    const folder = `links-${randomBytes(4).toString('hex')}`;
    const base = join(server.root, folder);
    await mkdir(join(base, 'real', 'sub'), { recursive: true });
    await writeFile(join(base, 'real', 'a.txt'), 'target file');
    await writeFile(join(base, 'real', 'sub', 'b.txt'), 'deeper');
    await mkdir(join(base, 'tree'));
    await writeFile(join(base, 'tree', 'own.txt'), 'own');
    await symlink('../real', join(base, 'tree', 'dir-link'));
    await symlink('../real/a.txt', join(base, 'tree', 'file-link'));
    await symlink('../nowhere', join(base, 'tree', 'dangling'));
    const driver = await open(folder);
    try {
      const listed = (await driver.list('/tree')).map(({ name, isDir, size, link }) => ({
        name,
        isDir,
        size,
        link,
      }));
      assert.deepEqual(listed, [
        // A dangling link is an empty file, with nothing behind it to protect.
        { name: 'dangling', isDir: false, size: 0, link: undefined },
        { name: 'dir-link', isDir: true, size: listed[1]?.size ?? 0, link: true },
        { name: 'file-link', isDir: false, size: 'target file'.length, link: true },
        { name: 'own.txt', isDir: false, size: 3, link: undefined },
      ]);
      assert.equal((await driver.stat('/tree/dir-link'))?.link, true);
      assert.equal((await driver.stat('/real'))?.link, undefined);
      // Reading through a link reads what it leads to.
      assert.deepEqual(
        (await driver.list('/tree/dir-link')).map((e) => e.name),
        ['a.txt', 'sub'],
      );

      await driver.remove('/tree/dir-link');
      assert.equal(await driver.stat('/tree/dir-link'), null);
      assert.equal(await readFile(join(base, 'real', 'sub', 'b.txt'), 'utf8'), 'deeper');
      await driver.remove('/tree');
      assert.equal(await driver.stat('/tree'), null);
      assert.equal(await readFile(join(base, 'real', 'a.txt'), 'utf8'), 'target file');
      assert.deepEqual(
        (await driver.list('/real')).map((e) => e.name),
        ['a.txt', 'sub'],
      );
    } finally {
      await driver.close();
    }
  });
});
