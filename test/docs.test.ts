import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.ts';

/**
 * The docs stay true to the code: the README stays short and opens with the two commands that
 * work on a fresh machine, its configuration table names every variable and key `src/config.ts`
 * reads, and no relative link in the README, `docs/` or `bench/README.md` leads nowhere.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const README = read('README.md');

/** The README's table rows (lines starting with `|`), where the configuration is listed. */
const tableRows = README.split('\n').filter((line) => line.startsWith('|'));

/** The dotted keys of a config object: task-kind maps and free-form option maps count as one key. */
function configKeys(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [prefix];
  const entries = Object.entries(value);
  const leafMap = ['tasks.workers', 'tasks.maxRetry', 'offlineDownload.aria2.options'].includes(prefix);
  if (prefix !== '' && (leafMap || entries.length === 0)) return [prefix];
  return entries.flatMap(([key, child]) => configKeys(child, prefix ? `${prefix}.${key}` : key));
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsIn(markdown: string): Set<string> {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, '');
  return new Set([...withoutCode.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1] ?? '')));
}

function markdownFiles(): string[] {
  const docs = existsSync(join(ROOT, 'docs'))
    ? readdirSync(join(ROOT, 'docs'))
        .filter((name) => name.endsWith('.md'))
        .map((name) => join('docs', name))
    : [];
  return ['README.md', 'bench/README.md', ...docs].filter((path) => existsSync(join(ROOT, path)));
}

describe('README', () => {
  it('is at most 10 KB', () => {
    const size = Buffer.byteLength(README);
    assert.ok(size <= 10 * 1024, `README.md is ${size} bytes; move detail into docs/`);
  });

  it('starts with the two commands, as package.json and .ci/run have them', () => {
    const firstBlock = /^# ferry\n+```sh\n([\s\S]*?)```/.exec(README);
    assert.ok(firstBlock, 'README.md opens with its title and then a sh code block');
    const commands = (firstBlock[1] ?? '')
      .trim()
      .split('\n')
      .map((line) => line.replace(/#.*$/, '').trim());
    assert.deepEqual(commands, ['npm install && npm start', 'npm install && npm test']);
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    assert.ok(scripts.start && scripts.test, 'package.json has start and test scripts');
    assert.match(read('.ci/run'), /^npm test$/m, '.ci/run runs the README test command');
  });

  it('lists every FERRY_* variable src/config.ts reads in its configuration table', () => {
    const variables = new Set(read('src/config.ts').match(/\bFERRY_[A-Z0-9_]+/g));
    assert.ok(variables.size > 5, 'found the variables in src/config.ts');
    const missing = [...variables].filter((name) => !tableRows.some((row) => row.includes(`\`${name}\``)));
    assert.deepEqual(missing, [], `add a one-line row to the README's configuration table for ${missing}`);
  });

  it('lists every config key in its configuration table', async () => {
    const keys = configKeys(await loadConfig({}));
    assert.ok(keys.includes('offlineDownload.aria2.rpcUrl'), 'flattened the config');
    const listed = (key: string) =>
      tableRows.some((row) => row.includes(`\`${key}\``) || row.includes(`\`${key}.<`));
    const missing = keys.filter((key) => !listed(key));
    assert.deepEqual(missing, [], `add these config keys to the README's configuration table: ${missing}`);
  });
});

describe('links in README.md, docs/ and bench/README.md', () => {
  it('lead to files and headings that exist', () => {
    const broken: string[] = [];
    for (const file of markdownFiles()) {
      // Code is not a link: task names such as `copy [/a](/b) to …` look like one.
      const text = read(file)
        .replace(/```[\s\S]*?```/g, '')
        .replace(/`[^`\n]*`/g, '');
      for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1] ?? '';
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
        const [path = '', anchor] = target.split('#');
        const resolved = path === '' ? join(ROOT, file) : resolve(ROOT, dirname(file), path);
        const where = `${file} → ${target}`;
        if (!resolved.startsWith(ROOT) || !existsSync(resolved)) {
          broken.push(`${where} (no such file)`);
          continue;
        }
        if (anchor && statSync(resolved).isFile() && resolved.endsWith('.md')) {
          const anchors = anchorsIn(readFileSync(resolved, 'utf8'));
          if (!anchors.has(anchor))
            broken.push(`${where} (no heading #${anchor} in ${relative(ROOT, resolved)})`);
        }
      }
    }
    assert.deepEqual(broken, []);
  });
});
