#!/usr/bin/env node
/**
 * `npm install` (postinstall): put the web UI ferry serves at `/` — the built OpenList frontend,
 * npm package `@openlist-frontend/openlist-frontend` (MIT) — into
 * `node_modules/.cache/ferry-web-ui/`. The version and the tarball's sha512 are pinned in
 * package.json (`config.webUiPackage`, `config.webUiIntegrity`); a tarball that does not match is
 * refused.
 *
 * Why not an ordinary dependency: the package ships its built `dist/`, but declares what it was
 * built from (monaco-editor, mermaid, katex, … and two GitHub tarballs) as runtime dependencies.
 * `npm install` would fetch hundreds of MB that nothing runs, and fails outright where GitHub
 * cannot be reached. `npm pack` fetches the package alone, through npm's own client and cache.
 * `.cache` under node_modules is left alone by npm, so a later `npm install <pkg>` keeps it.
 *
 * Skipped when `FERRY_WEB_UI=false` (a server that will not serve the UI needs no copy).
 * Run again by hand: `node scripts/fetch-web-ui.mjs`.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { x as extract } from 'tar';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const target = join(root, 'node_modules', '.cache', 'ferry-web-ui');

if (['false', '0'].includes(process.env.FERRY_WEB_UI ?? '')) {
  console.log('fetch-web-ui: FERRY_WEB_UI is off; not fetching the web UI');
  process.exit(0);
}

const { config } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
const spec = config?.webUiPackage;
const integrity = config?.webUiIntegrity;
const at = typeof spec === 'string' ? spec.lastIndexOf('@') : -1;
if (at <= 0 || typeof integrity !== 'string' || !integrity.startsWith('sha512-')) {
  console.error('fetch-web-ui: package.json needs config.webUiPackage (name@version) and config.webUiIntegrity');
  process.exit(1);
}
const name = spec.slice(0, at);
const version = spec.slice(at + 1);

const installed = await readFile(join(target, 'package.json'), 'utf8')
  .then((text) => JSON.parse(text))
  .catch(() => null);
if (installed?.name === name && installed?.version === version && existsSync(join(target, 'dist', 'index.html'))) {
  process.exit(0);
}

await mkdir(join(root, 'node_modules', '.cache'), { recursive: true });
const work = await mkdtemp(join(root, 'node_modules', '.cache', 'ferry-web-ui-'));
try {
  // Under npm, npm_execpath is the npm that runs this script; run the same one.
  const npm = process.env.npm_execpath;
  const [command, prefix] = npm?.endsWith('.js') ? [process.execPath, [npm]] : ['npm', []];
  const out = execFileSync(command, [...prefix, 'pack', spec, '--json', '--pack-destination', work], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [packed] = JSON.parse(out);
  const tarball = join(work, packed.filename);
  const actual = `sha512-${createHash('sha512')
    .update(await readFile(tarball))
    .digest('base64')}`;
  if (actual !== integrity) {
    throw new Error(`${spec}: the tarball's integrity is ${actual}, package.json pins ${integrity}`);
  }
  const staging = join(work, 'package');
  await mkdir(staging);
  // The lite build and the translation sources are not what ferry serves.
  await extract({
    file: tarball,
    cwd: staging,
    strip: 1,
    filter: (path) => !path.startsWith('package/dist/lite/') && path !== 'package/dist/i18n.tar.gz',
  });
  await rm(target, { recursive: true, force: true });
  await rename(staging, target);
  console.log(`fetch-web-ui: ${spec} in ${target}`);
} catch (err) {
  console.error(`fetch-web-ui: could not fetch ${spec}: ${err.message}`);
  console.error('fetch-web-ui: set FERRY_WEB_UI=false to install without the web UI');
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
