import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { freePort, waitForPort } from './process.ts';

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

/**
 * True when pyftpdlib is installed. On a developer's machine without it the callers skip with
 * the reason printed; under CI=true (where `.ci/run` installs it) a missing one is an error.
 */
export function ftpServerAvailable(): boolean {
  if (spawnSync(PYTHON, ['-c', 'import pyftpdlib'], { stdio: 'ignore' }).status === 0) return true;
  const reason = 'pyftpdlib is not installed (apt-get install python3-pyftpdlib)';
  if (process.env.CI === 'true') throw new Error(`${reason}; it is required under CI`);
  process.stderr.write(`# skipping the FTP tests: ${reason}\n`);
  return false;
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
