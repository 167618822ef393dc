import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';

/**
 * The layering rules of DESIGN.md live in biome.json and run in `npm run lint`. This test lints
 * small probe files, placed where each rule applies, with the project's own biome.json, so a rule
 * that stops firing (a changed glob, an override that shadows another) fails here rather than
 * letting the shape of the code drift unnoticed.
 */

const ROOT = join(import.meta.dirname, '..');
const BIOME = join(ROOT, 'node_modules', '.bin', 'biome');

describe('layering rules (biome.json)', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-layering-'));
    const config = JSON.parse(await readFile(join(ROOT, 'biome.json'), 'utf8')) as Record<string, unknown>;
    delete config.$schema;
    await writeFile(join(dir, 'biome.json'), JSON.stringify(config));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** Lint one probe file at `path` (relative to a tree shaped like this repository). */
  async function lint(path: string, source: string): Promise<string[]> {
    await rm(join(dir, 'src'), { recursive: true, force: true });
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), source);
    const run = spawnSync(BIOME, ['lint', '--max-diagnostics=50', '.'], { cwd: dir, encoding: 'utf8' });
    return [...`${run.stdout}${run.stderr}`.matchAll(/lint\/\w+\/(\w+)/g)].map((m) => m[1] as string);
  }

  const refused: [string, string, string][] = [
    ['a kind reading the disk', 'src/tasks/kinds/probe.ts', "import { readFile } from 'node:fs/promises';"],
    [
      'a kind reaching a driver',
      'src/tasks/kinds/probe.ts',
      "import { S3Driver } from '../../storage/s3/s3-driver.ts';",
    ],
    [
      'a kind reaching the store',
      'src/tasks/kinds/probe.ts',
      "import { SqlTaskStore } from '../../store/sql-task-store.ts';",
    ],
    [
      'a dialect reaching the store',
      'src/api/alist/probe.ts',
      "import { UserStore } from '../../store/user-store.ts';",
    ],
    ['a dialect importing another', 'src/api/efile/probe.ts', "import { ok } from '../alist/envelope.ts';"],
    [
      'the engine importing a dialect',
      'src/tasks/probe.ts',
      "import { ok } from '../api/alist/envelope.ts';",
    ],
    ['storage importing the engine', 'src/storage/probe.ts', "import { Runner } from '../tasks/runner.ts';"],
    [
      'a driver reaching the store',
      'src/storage/s3/probe.ts',
      "import { SqlTaskStore } from '../../store/sql-task-store.ts';",
    ],
    ['io importing the engine', 'src/io/probe.ts', "import { TaskService } from '../tasks/service.ts';"],
    [
      'the store importing a kind',
      'src/store/probe.ts',
      "import { copyKind } from '../tasks/kinds/copy.ts';",
    ],
  ];
  for (const [what, path, line] of refused) {
    it(`refuses ${what}`, async () => {
      const rules = await lint(path, `${line}\n\nexport const probe = 1;\n`);
      assert.ok(
        rules.includes('noRestrictedImports'),
        `${path}: ${line} passed the lint (${rules.join(', ')})`,
      );
    });
  }

  it('lets a kind use the storage layer and a dialect use a service', async () => {
    assert.deepEqual(
      await lint(
        'src/tasks/kinds/probe.ts',
        "import { copyBetween } from '../../storage/transfer.ts';\n\nexport const probe = copyBetween;\n",
      ),
      [],
    );
    assert.deepEqual(
      await lint(
        'src/api/alist/probe.ts',
        "import { TaskService } from '../../tasks/service.ts';\n\nexport const probe = TaskService;\n",
      ),
      [],
    );
  });

  it('refuses an import cycle', async () => {
    await rm(join(dir, 'src'), { recursive: true, force: true });
    await mkdir(join(dir, 'src', 'files'), { recursive: true });
    await writeFile(
      join(dir, 'src/files/a.ts'),
      "import { b } from './b.ts';\n\nexport const a = () => b;\n",
    );
    await writeFile(
      join(dir, 'src/files/b.ts'),
      "import { a } from './a.ts';\n\nexport const b = () => a;\n",
    );
    const run = spawnSync(BIOME, ['lint', '.'], { cwd: dir, encoding: 'utf8' });
    assert.match(`${run.stdout}${run.stderr}`, /noImportCycles/);
  });
});
