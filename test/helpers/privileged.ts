import { execFile } from 'node:child_process';
import type { TestContext } from 'node:test';

/**
 * Set or clear the immutable flag of a file or folder (`chattr`, e2fsprogs): even root can then
 * not delete it, or anything in the folder. False when chattr is missing or not allowed here.
 */
export function setImmutable(path: string, on: boolean): Promise<boolean> {
  return new Promise((resolve) =>
    execFile('chattr', [on ? '+i' : '-i', path], (err) => resolve(err === null)),
  );
}

/**
 * For a test that needs root (`chattr +i`, mounting a tmpfs): whether it may go on. Without the
 * privilege it skips with the reason on a developer's machine; under CI=true, which runs as root,
 * that is a failure.
 */
export function privileged(t: TestContext, allowed: boolean, what: string): boolean {
  if (allowed) return true;
  if (process.env.CI === 'true') throw new Error(`${what} is needed under CI (root)`);
  t.skip(`${what} is not allowed here (it needs root)`);
  return false;
}
