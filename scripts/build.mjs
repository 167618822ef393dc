#!/usr/bin/env node
/**
 * `npm run build`: bundle `src/cli.ts` and the JavaScript dependencies it loads into `dist/`
 * (or the folder given as the first argument), for `npm start` and `bin/ferry.js`. Type checking
 * is tsc's part of the build script; esbuild only strips the types.
 *
 * Why a bundle rather than tsc's file-per-module output: Node keeps every ES module it loads as a
 * record of its own, and kysely and jose alone are about 1,150 modules. Loaded that way, an idle
 * server is about 93 MB resident; bundled, about 79 MB. Code loaded only on demand (the S3, WebDAV
 * and SFTP drivers, the archive readers, the HTTP downloader) stays in chunks of its own, loaded
 * when first used, as before.
 *
 * Left outside the bundle, loaded from node_modules: packages with native add-ons
 * (better-sqlite3, ssh2 and its optional cpu-features, pg's optional pg-native).
 */
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const outdir = resolve(process.argv[2] ?? resolve(root, 'dist'));

// The old build goes first (its chunks have hashed names); a folder that holds something else is
// refused rather than emptied.
if (existsSync(outdir) && !existsSync(resolve(outdir, 'cli.js')) && (await readdir(outdir)).length > 0) {
  console.error(`build: ${outdir} is not empty and holds no earlier build; not touching it`);
  process.exit(1);
}
await rm(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  // The small-file threads load their own module (file-thread.js, see
  // src/io/module-thread.ts), found next to the chunks.
  entryPoints: {
    cli: 'src/cli.ts',
    'file-thread': 'src/io/file-thread.ts',
  },
  outdir,
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: ['better-sqlite3', 'ssh2', 'cpu-features', 'pg-native'],
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __ferryRequire } from 'node:module'; const require = __ferryRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
