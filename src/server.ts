import pino from 'pino';
import { buildApp } from './app.ts';
import type { Config } from './config.ts';
import { startCore } from './core.ts';
import { redact } from './store/database.ts';

/** Start ferry: the engine, then the HTTP server; stop both cleanly on SIGINT/SIGTERM. */
export async function serve(config: Config): Promise<void> {
  const log = pino({ level: config.logLevel });
  const core = await startCore(config, log);
  const app = await buildApp(core);
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    // No listener (the port is taken, say): stop the engine too, so the process exits with the
    // error instead of staying up and running tasks that nobody can see or control.
    await app.close().catch(() => undefined);
    await core.close();
    throw err;
  }
  log.info({ dataDir: config.dataDir, database: redact(config.databaseUrl) }, 'ferry is serving');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down; running tasks resume at next start');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    await app.close();
    await core.close();
    process.exit(0);
  };
  // A promise that failed with nothing waiting for it is a bug, but one task's bug: Node's default
  // (end the process) would stop every transfer at once. Logged loudly instead; the tests, which
  // run the engine without this, fail on any such rejection.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (a bug): serving on'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
