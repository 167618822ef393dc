import { spawnSync } from 'node:child_process';

/**
 * Whether the outside programs `who` needs are installed: `missing` names the Debian packages
 * that are not. On a developer's machine a missing one makes the caller skip, with the reason
 * printed; under CI=true (where `.ci/run` installs them) it is an error, never a silent skip.
 */
export function requireTools(who: string, missing: readonly string[]): boolean {
  if (missing.length === 0) return true;
  const reason = `${who} need ${missing.join(' ')} (apt-get install ${missing.join(' ')})`;
  if (process.env.CI === 'true') throw new Error(`${reason}: required under CI`);
  process.stderr.write(`# skipping: ${reason}\n`);
  return false;
}

/** True when `command` can be started (with `args`, which should make it exit at once). */
export function runs(command: string, args: readonly string[] = ['--version']): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).error === undefined;
}
