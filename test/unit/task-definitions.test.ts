/**
 * Each task kind's one definition: the names its tasks get (the seed's naming section, which users
 * read in every task list and the OpenList UI parses), and the payloads it refuses, whoever hands
 * them in (a dialect, a parent task, a row read back from the store).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TASK_KINDS } from '../../src/config.ts';
import { isFerryError } from '../../src/errors.ts';
import { type Locate, TASK_DEFINITIONS, taskSpec } from '../../src/tasks/definitions/index.ts';

/** Two mounts, `/s` and `/dst/deep`, as MountRegistry.resolve would split paths below them. */
const locate: Locate = (path) => {
  for (const mountPath of ['/dst/deep', '/s']) {
    if (path === mountPath) return { mountPath, path: '/' };
    if (path.startsWith(`${mountPath}/`)) return { mountPath, path: path.slice(mountPath.length) };
  }
  throw new Error(`no mount for ${path}`);
};

describe('task definitions', () => {
  it('defines every kind the engine knows, each under its own name', () => {
    assert.deepEqual(Object.keys(TASK_DEFINITIONS).sort(), [...TASK_KINDS].sort());
    for (const [kind, definition] of Object.entries(TASK_DEFINITIONS)) assert.equal(definition.kind, kind);
  });

  it("names every kind's tasks as the seed spells them", () => {
    const names = [
      taskSpec('upload', { dst: '/s/test/1.png', overwrite: true }, locate),
      taskSpec(
        'copy',
        { src: '/s/a/b.txt', dstDir: '/dst/deep/c', overwrite: false, skipExisting: false, keepBoth: false },
        locate,
      ),
      taskSpec(
        'move',
        { src: '/s/a', dstDir: '/dst/deep', overwrite: false, skipExisting: false, keepBoth: false },
        locate,
      ),
      taskSpec('delete', { path: '/s/old' }, locate),
      taskSpec(
        'offline_download',
        {
          url: 'https://example.com/files/big%20file.iso?x=1',
          dstDir: '/s/in',
          tool: 'SimpleHttp',
          deletePolicy: 'delete_never',
        },
        locate,
      ),
      taskSpec(
        'offline_download_transfer',
        { src: '/data/offline/t1/done/f.iso', dstDir: '/dst/deep/in', deletePolicy: 'delete_always' },
        locate,
      ),
      taskSpec(
        'decompress',
        {
          src: '/s/a.zip',
          dstDir: '/dst/deep/out',
          password: 'pw',
          innerPath: '/docs',
          putIntoNewDir: false,
          overwrite: false,
        },
        locate,
      ),
      taskSpec(
        'decompress_upload',
        { dstDir: '/dst/deep/out/a', overwrite: false, archive: 'a.zip' },
        locate,
      ),
      taskSpec(
        'sync',
        {
          job: { id: 'j1', name: 'mirror' },
          mode: 'sync',
          srcDir: '/s/photos',
          dstDir: '/dst/deep/backup',
          include: [],
          exclude: ['*.tmp'],
          compare: 'size_mtime',
          conflict: 'overwrite',
          maxDelete: 10,
        },
        locate,
      ),
    ].map((spec) => spec.name);
    assert.deepEqual(names, [
      'upload 1.png to [/s](/test)',
      'copy [/s](/a/b.txt) to [/dst/deep](/c)',
      'move [/s](/a) to [/dst/deep](/)',
      'delete [/s](/old)',
      'download big file.iso to (/s/in)',
      'transfer [](/data/offline/t1/done/f.iso) to [/dst/deep](/in)',
      'decompress [/s](/a.zip)[/docs] to [/dst/deep](/out) with password <pw>',
      'upload a.zip to [/dst/deep](/out/a)',
      'sync [/s](/photos) to [/dst/deep](/backup)',
    ]);
  });

  it('stores a payload the way its kind reads it back: normalised, defaults filled in', () => {
    const spec = taskSpec(
      'copy',
      { src: '/s//a/./b', dstDir: '/s/x/', overwrite: true, skipExisting: false, keepBoth: false },
      locate,
    );
    assert.deepEqual(spec.payload, {
      src: '/s/a/b',
      dstDir: '/s/x',
      overwrite: true,
      skipExisting: false,
      keepBoth: false,
    });
    assert.deepEqual(TASK_DEFINITIONS.copy.read(spec.payload), spec.payload);
    assert.deepEqual(TASK_DEFINITIONS.decompress.read({ src: '/s/a.zip', dstDir: '/s' }), {
      src: '/s/a.zip',
      dstDir: '/s',
      password: '',
      innerPath: '/',
      putIntoNewDir: false,
      overwrite: false,
    });
  });

  it('refuses a payload that is not one, with a coded error a task fails on at once', () => {
    const refused: [keyof typeof TASK_DEFINITIONS, Record<string, unknown>][] = [
      ['copy', { src: 42, dstDir: '/s' }],
      ['copy', { src: '/s/../etc', dstDir: '/s' }],
      ['copy', { src: '/s/a', dstDir: '/s', dstName: '../x' }],
      ['delete', {}],
      ['upload', { dst: ['/s/a'] }],
      ['offline_download', { url: 'https://a/', dstDir: '/s', tool: 'wget' }],
      ['offline_download', { url: 'https://a/', dstDir: '/s', tool: 'aria2', deletePolicy: 'sometimes' }],
      ['offline_download', { dstDir: '/s', tool: 'aria2' }],
      ['offline_download_transfer', { dstDir: '/s' }],
      ['decompress', { src: '/s/a.zip', dstDir: null }],
      ['sync', { mode: 'sync', srcDir: '/s/a', dstDir: '/s/b' }],
      ['sync', { job: { id: 'j' }, mode: 'mirror', srcDir: '/s/a', dstDir: '/s/b' }],
      ['sync', { job: { id: 'j' }, mode: 'sync', srcDir: '/s/../a', dstDir: '/s/b' }],
    ];
    for (const [kind, payload] of refused) {
      assert.throws(
        () => TASK_DEFINITIONS[kind].read(payload),
        (err) => isFerryError(err) && err.unrecoverable,
        `${kind} ${JSON.stringify(payload)}`,
      );
    }
  });
});
