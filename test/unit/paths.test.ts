import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkName,
  isWithin,
  joinPath,
  normalizePath,
  parentPath,
  relativeTo,
} from '../../src/storage/paths.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe('normalizePath', () => {
  it('collapses slashes and dots and always starts with /', () => {
    assert.equal(normalizePath(''), '/');
    assert.equal(normalizePath('a//b/./c/'), '/a/b/c');
    assert.equal(normalizePath('/local/x.txt'), '/local/x.txt');
  });

  it('refuses .. in any position instead of resolving it', () => {
    for (const p of ['..', '/..', '/a/../b', 'a/b/..', '/a/../../etc/passwd']) {
      assert.equal(
        code(() => normalizePath(p)),
        'E_PATH_OUTSIDE_ROOT',
        p,
      );
    }
  });

  it('returns normal paths as they are, and still normalises or refuses every other spelling', () => {
    for (const p of [
      '/a',
      '/a/...',
      '/a/.b',
      '/a/b.',
      '/.x/..y',
      `/${'x'.repeat(100)}`,
      `/${'€'.repeat(85)}`,
    ]) {
      assert.equal(normalizePath(p), p);
    }
    assert.equal(normalizePath('/a/.'), '/a');
    assert.equal(normalizePath('/a//b'), '/a/b');
    assert.equal(normalizePath('/a/b/'), '/a/b');
    assert.equal(normalizePath('/'), '/');
    assert.equal(
      code(() => normalizePath('/a/..')),
      'E_PATH_OUTSIDE_ROOT',
    );
    // 86 three-byte characters: 258 bytes, one name too long.
    assert.equal(
      code(() => normalizePath(`/a/${'€'.repeat(86)}`)),
      'E_INVALID_PATH',
    );
  });

  it('keeps percent signs literal: decoding happens once, at the edge', () => {
    assert.equal(normalizePath('/a/%2e%2e/b'), '/a/%2e%2e/b');
  });

  it('refuses non-strings, NUL bytes and over-long names', () => {
    assert.equal(
      code(() => normalizePath(42)),
      'E_INVALID_PATH',
    );
    assert.equal(
      code(() => normalizePath('/a\0b')),
      'E_INVALID_PATH',
    );
    assert.equal(
      code(() => normalizePath(`/${'x'.repeat(256)}`)),
      'E_INVALID_PATH',
    );
  });
});

describe('checkName', () => {
  it('accepts plain names and refuses separators, dots and absolute names', () => {
    assert.equal(checkName('report (1).pdf'), 'report (1).pdf');
    for (const n of ['', '.', '..', 'a/b', '/etc/passwd'])
      assert.ok(
        code(() => checkName(n)),
        n,
      );
    assert.equal(
      code(() => checkName(7)),
      'E_INVALID_PATH',
    );
  });
});

describe('path helpers', () => {
  it('joins, finds parents and tests containment on segment boundaries', () => {
    assert.equal(joinPath('/a', 'b', 'c.txt'), '/a/b/c.txt');
    assert.equal(joinPath('/', 'a'), '/a');
    assert.equal(joinPath('/a', '/b/c'), '/a/b/c');
    assert.equal(joinPath('/a/', '/b'), '/a/b');
    assert.equal(joinPath('a', 'b'), '/a/b');
    assert.equal(joinPath('/a', '/'), '/a');
    assert.equal(
      code(() => joinPath('/a', '/..')),
      'E_PATH_OUTSIDE_ROOT',
    );
    assert.equal(
      code(() => joinPath('/a', '../b')),
      'E_PATH_OUTSIDE_ROOT',
    );
    assert.equal(parentPath('/a/b'), '/a');
    assert.equal(parentPath('/a'), '/');
    assert.equal(isWithin('/local/x', '/local'), true);
    assert.equal(isWithin('/localx', '/local'), false);
    assert.equal(relativeTo('/local/x/y', '/local'), '/x/y');
    assert.equal(relativeTo('/local', '/local'), '/');
  });
});
