import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** PostgreSQL for tests: `FERRY_TEST_POSTGRES_URL`, else the local server CI provides. */
const POSTGRES_URL = process.env.FERRY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDatabase {
  dialect: 'sqlite' | 'postgres';
  /**
   * A database URL of its own for one test suite (a fresh PostgreSQL schema; for SQLite,
   * undefined: the data directory's file), and how to drop it.
   */
  create(): Promise<{ url: string | undefined; drop: () => Promise<void> }>;
}

const sqlite: TestDatabase = {
  dialect: 'sqlite',
  create: async () => ({ url: undefined, drop: async () => undefined }),
};

const postgres: TestDatabase = {
  dialect: 'postgres',
  async create() {
    const schema = `ferry_test_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.end();
    const url = new URL(POSTGRES_URL);
    url.searchParams.set('options', `-c search_path=${schema}`);
    return {
      url: url.toString(),
      async drop() {
        const c = new pg.Client({ connectionString: POSTGRES_URL });
        await c.connect();
        await c.query(`DROP SCHEMA ${schema} CASCADE`);
        await c.end();
      },
    };
  },
};

async function postgresReachable(): Promise<string | null> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The databases every store test runs against: SQLite always, PostgreSQL when reachable. On a
 * developer's machine without PostgreSQL the PostgreSQL runs are skipped with the reason printed;
 * under CI=true a missing PostgreSQL is an error.
 */
export async function testDatabases(): Promise<TestDatabase[]> {
  const why = await postgresReachable();
  if (why === null) return [sqlite, postgres];
  if (process.env.CI === 'true') throw new Error(`PostgreSQL is required under CI (${POSTGRES_URL}): ${why}`);
  process.stderr.write(`# skipping PostgreSQL runs: ${POSTGRES_URL} unreachable (${why})\n`);
  return [sqlite];
}
