#!/usr/bin/env node
import { parseArgs } from 'node:util';
import pino from 'pino';
import { DEFAULT_GENERAL_PERMISSION, ROLE } from './auth/roles.ts';
import { loadConfig } from './config.ts';
import { startCore } from './core.ts';
import { FerryError } from './errors.ts';
import { serve } from './server.ts';

const HELP = `ferry — durable background file operations with AList-compatible task APIs

Usage:
  ferry serve                         run the server (FERRY_HOST, FERRY_PORT, FERRY_DATA_DIR, FERRY_CONFIG)
  ferry user add <name> <password> [--admin] [--guest] [--base-path /x]
  ferry user passwd <name> <password>
  ferry user list
  ferry --help

Environment:
  FERRY_HOST (0.0.0.0)  FERRY_PORT (5244)  FERRY_DATA_DIR (./data)
  FERRY_ADMIN_PASSWORD  password of "admin" on first start (else generated and printed once)
  FERRY_CONFIG          JSON config file (see README)
  FERRY_DATABASE_URL    sqlite:<file> (default <data dir>/ferry.db)
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      admin: { type: 'boolean' },
      guest: { type: 'boolean' },
      'base-path': { type: 'string' },
    },
  });
  const [command, sub, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(HELP);
    return command || values.help ? 0 : 1;
  }
  const config = await loadConfig();
  if (command === 'serve') {
    await serve(config);
    return -1; // keep running
  }
  if (command !== 'user') throw new FerryError('E_BAD_REQUEST', `unknown command "${command}" (see --help)`);
  // User commands open the data directory without running workers; the server must be stopped.
  const core = await startCore(config, pino({ level: 'warn' }), { runWorkers: false });
  try {
    if (sub === 'list') {
      for (const u of await core.auth.listUsers()) {
        process.stdout.write(
          `${u.id}\t${u.username}\trole=${u.role}\t${u.disabled ? 'disabled' : 'enabled'}\tbase=${u.basePath}\n`,
        );
      }
    } else if (sub === 'add' && rest.length === 2) {
      const role = values.admin ? ROLE.ADMIN : values.guest ? ROLE.GUEST : ROLE.GENERAL;
      const user = await core.auth.createUser({
        username: rest[0],
        password: rest[1],
        role,
        permission: role === ROLE.GUEST ? 0 : DEFAULT_GENERAL_PERMISSION,
        ...(values['base-path'] && { base_path: values['base-path'] }),
      });
      process.stdout.write(`added user ${user.username} (id ${user.id})\n`);
    } else if (sub === 'passwd' && rest.length === 2 && rest[0] && rest[1]) {
      await core.auth.setPassword(rest[0], rest[1]);
      process.stdout.write(`password of ${rest[0]} changed\n`);
    } else {
      throw new FerryError(
        'E_BAD_REQUEST',
        'usage: ferry user add|passwd <name> <password> | ferry user list',
      );
    }
  } finally {
    await core.close();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ferry: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
