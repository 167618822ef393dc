import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { sshKeyPair } from './ssh-keys.ts';
import { requireTools } from './tools.ts';

/** Debian's `openssh-sftp-server`: OpenSSH's SFTP subsystem, the program sshd runs for `sftp`. */
const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

/**
 * An SFTP server on loopback whose SFTP side is OpenSSH's own `sftp-server`, the one most SFTP
 * users meet: each session's `sftp` subsystem is piped to a new `sftp-server` process, behind
 * an SSH transport from the ssh2 package (a whole sshd would need a system account, host keys
 * and a privilege-separation folder). Unlike `rclone serve sftp`, it shows symbolic links as
 * links. Paths are this machine's own, absolute: mount `root` as the `root_folder_path`.
 */
export interface OpenSshSftpServer {
  /** `127.0.0.1:<port>` (AList's `address`). */
  address: string;
  /** A fresh folder on this machine, for the tests to fill. */
  root: string;
  username: string;
  password: string;
  close(): Promise<void>;
}

/** True when OpenSSH's sftp-server is installed; see `requireTools` for what happens when it is not. */
export function openSshSftpAvailable(): boolean {
  return requireTools('the OpenSSH SFTP tests', existsSync(SFTP_SERVER) ? [] : ['openssh-sftp-server']);
}

export async function startOpenSshSftp(): Promise<OpenSshSftpServer> {
  const root = await mkdtemp(join(tmpdir(), 'ferry-openssh-'));
  const username = 'ferry';
  const password = 'ferry-secret';
  const hostKey = sshKeyPair().private;
  const children = new Set<ChildProcess>();
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (client) => {
    client.on('authentication', (ctx) => {
      if (ctx.method === 'password' && ctx.username === username && ctx.password === password) ctx.accept();
      else ctx.reject(['password']);
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('subsystem', (accept, reject, info) => {
          if (info.name !== 'sftp') return reject();
          const channel = accept();
          const child = spawn(SFTP_SERVER, ['-e', '-l', 'ERROR', '-d', root], {
            stdio: ['pipe', 'pipe', 'ignore'],
          });
          children.add(child);
          channel.pipe(child.stdin);
          child.stdout.pipe(channel);
          child.on('exit', (code) => {
            children.delete(child);
            channel.exit(code ?? 0);
            channel.end();
          });
          channel.on('close', () => child.kill());
        });
      });
    });
    // A client that goes away mid-session is not the test's failure.
    client.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    root,
    username,
    password,
    async close() {
      for (const child of children) child.kill();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(root, { recursive: true, force: true });
    },
  };
}
