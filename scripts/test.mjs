// The test suite (`npm run test:unit`): every test/**/*.test.ts under node's test runner.
//
// The files run one at a time, except test/all-pairs.test.ts, which runs in a runner of its own
// beside them: it copies a large tree between every pair of storage servers and spends most of
// its minutes waiting on those servers (one core at most), while the others need little CPU
// each. Running the rest one file at a time keeps the tests that time a takeover or a cancel
// away from each other. All-pairs' report is printed when it ends, so the two reports do not
// interleave. The exit code is non-zero when either runner fails.
//
// Arguments, if any, are the files to run instead of the whole suite (then all in one runner).

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const ALONGSIDE = 'test/all-pairs.test.ts';

function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return entry.name.endsWith('.test.ts') ? [relative('.', path)] : [];
  });
}

function run(files, output) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], {
      stdio: ['ignore', output, output],
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

function runBuffered(files) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks = [];
    child.stdout.on('data', (chunk) => chunks.push(chunk));
    child.stderr.on('data', (chunk) => chunks.push(chunk));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output: Buffer.concat(chunks) }));
  });
}

const chosen = process.argv.slice(2);
if (chosen.length > 0) {
  process.exitCode = await run(chosen, 'inherit');
} else {
  const files = testFiles('test').sort();
  const rest = files.filter((f) => f !== ALONGSIDE);
  const alongside = files.includes(ALONGSIDE) ? runBuffered([ALONGSIDE]) : Promise.resolve(null);
  const restCode = await run(rest, 'inherit');
  const pairs = await alongside;
  if (pairs) {
    process.stdout.write(`\n# ${ALONGSIDE} (ran beside the files above)\n`);
    process.stdout.write(pairs.output);
  }
  process.exitCode = restCode !== 0 || (pairs && pairs.code !== 0) ? 1 : 0;
}
