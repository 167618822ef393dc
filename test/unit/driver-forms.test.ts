import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { driverInfo, driverNames } from '../../src/api/alist/driver-info.ts';
import { driverFactories } from '../../src/core.ts';
import { FerryError } from '../../src/errors.ts';
import { localRoot } from '../../src/storage/local/settings.ts';
import { s3Settings } from '../../src/storage/s3/settings.ts';
import type { SettingItem } from '../../src/storage/settings-form.ts';
import { sftpSettings } from '../../src/storage/sftp/settings.ts';
import { webdavSettings } from '../../src/storage/webdav/settings.ts';

/**
 * Each driver's description for AList's Add Storage form against the driver's settings parser:
 * the form offers exactly the keys the parser reads, what the form fills in by default is
 * accepted, and a required field left empty is refused. A field added to one and not the other
 * fails here.
 */

type Parser = (addition: Record<string, unknown>) => unknown;

const PARSERS: Record<string, Parser> = {
  Local: (a) => localRoot(a, '/srv/ferry-data'),
  S3: s3Settings,
  SFTP: sftpSettings,
  WebDav: webdavSettings,
};

/** Values a user types into the required fields that have no default. */
const TYPED: Record<string, Record<string, unknown>> = {
  Local: { root_folder_path: 'files' },
  S3: { bucket: 'photos', access_key_id: 'AKIDEXAMPLE', secret_access_key: 'secret' },
  SFTP: { address: '127.0.0.1:2222', username: 'ferry', password: 'pw' },
  WebDav: { address: 'http://127.0.0.1:8080/dav' },
};

/** What the OpenList UI puts in `addition` for a field before the user types (its GetDefaultValue). */
function uiDefault(item: SettingItem): unknown {
  if (item.type === 'bool') return item.default === 'true';
  if (item.type === 'number') return item.default ? Number.parseInt(item.default, 10) : 0;
  return item.default;
}

/** The form's addition for `driver`, as the UI posts it once the user filled the required fields. */
function filledForm(driver: string): Record<string, unknown> {
  const info = driverInfo(driver);
  assert.ok(info, driver);
  const addition: Record<string, unknown> = {};
  for (const item of info.additional) addition[item.name] = uiDefault(item);
  return { ...addition, ...TYPED[driver] };
}

/** Run `parse` over `addition`, noting every key it reads. */
function keysRead(parse: Parser, addition: Record<string, unknown>): Set<string> {
  const read = new Set<string>();
  const watched = new Proxy(addition, {
    get(target, key, receiver) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key, receiver);
    },
  });
  parse(watched);
  return read;
}

describe('driver forms and settings parsers', () => {
  it('describes exactly the drivers ferry can mount', () => {
    assert.deepEqual(driverNames().sort(), [...driverFactories().keys()].sort());
    assert.deepEqual(Object.keys(PARSERS).sort(), driverNames().sort());
    assert.equal(driverInfo('Nope'), null);
    assert.equal(driverInfo('constructor'), null);
  });

  for (const driver of Object.keys(PARSERS)) {
    const parse = PARSERS[driver] as Parser;

    it(`${driver}: the form offers the keys the parser reads, no more, no fewer`, () => {
      const info = driverInfo(driver);
      assert.ok(info);
      const offered = new Set(info.additional.map((i) => i.name));
      assert.equal(offered.size, info.additional.length, 'no key twice');
      assert.deepEqual([...keysRead(parse, filledForm(driver))].sort(), [...offered].sort());
    });

    it(`${driver}: a form filled as the UI fills it is accepted`, () => {
      assert.doesNotThrow(() => parse(filledForm(driver)));
    });

    it(`${driver}: each required field without a default is refused when left empty`, () => {
      const info = driverInfo(driver);
      assert.ok(info);
      const required = info.additional.filter((i) => i.required && i.default === '');
      assert.ok(required.length > 0);
      for (const item of required) {
        const addition = { ...filledForm(driver), [item.name]: '' };
        assert.throws(
          () => parse(addition),
          (err) => err instanceof FerryError && err.code === 'E_STORAGE_CONFIG',
          item.name,
        );
      }
    });

    it(`${driver}: every item is well formed for the form`, () => {
      const info = driverInfo(driver);
      assert.ok(info);
      assert.equal(info.config.name, driver);
      for (const item of [...info.common, ...info.additional]) {
        assert.ok(['string', 'number', 'bool', 'text', 'select'].includes(item.type), item.name);
        if (item.type === 'select') {
          assert.ok(item.options.length > 0, `${item.name} has options`);
          if (item.default) assert.ok(item.options.split(',').includes(item.default), item.name);
        }
        if (item.type === 'bool') assert.ok(['', 'true', 'false'].includes(item.default), item.name);
      }
      // The storage fields AList's form always has.
      const common = info.common.map((i) => i.name);
      for (const name of ['mount_path', 'order', 'remark', 'webdav_policy', 'down_proxy_url', 'enable_sign'])
        assert.ok(common.includes(name), `${driver} offers ${name}`);
    });
  }

  it('offers the common fields as AList does for the driver of that name', () => {
    const names = (driver: string) => driverInfo(driver)?.common.map((i) => i.name) ?? [];
    // Local lists live and always streams: no cache, no proxy switch.
    assert.ok(!names('Local').includes('cache_expiration'));
    assert.ok(!names('Local').includes('web_proxy'));
    // S3 has both, its proxy off by default; WebDav's proxy is on by default.
    assert.ok(names('S3').includes('cache_expiration'));
    const webProxy = (driver: string) => driverInfo(driver)?.common.find((i) => i.name === 'web_proxy');
    assert.equal(webProxy('S3')?.default, '');
    assert.equal(webProxy('WebDav')?.default, 'true');
  });
});
