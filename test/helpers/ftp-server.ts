import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { freePort, waitForPort } from './process.ts';
import { requireTools } from './tools.ts';

/**
 * A real FTP server on loopback: Debian's `python3-pyftpdlib` serving `root` read-only to one
 * user with a password (anonymous login off). Debian's python is called by its path: a python3
 * earlier on the PATH (pyenv, a venv) does not have the Debian module.
 */
export interface FtpServer {
  port: number;
  username: string;
  password: string;
  close(): Promise<void>;
}

const PYTHON = '/usr/bin/python3';

/** True when pyftpdlib is installed; see `requireTools` for what happens when it is not. */
export function ftpServerAvailable(): boolean {
  const installed = spawnSync(PYTHON, ['-c', 'import pyftpdlib'], { stdio: 'ignore' }).status === 0;
  return requireTools('the FTP tests', installed ? [] : ['python3-pyftpdlib']);
}

export async function startFtpServer(root: string): Promise<FtpServer> {
  const port = await freePort();
  const username = 'ferry';
  const password = 'ftp-secret';
  const child: ChildProcess = spawn(
    PYTHON,
    ['-m', 'pyftpdlib', '-i', '127.0.0.1', '-p', String(port), '-d', root, '-u', username, '-P', password],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  await waitForPort(port, child, () => output);
  return {
    port,
    username,
    password,
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
