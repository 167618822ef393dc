import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nameFromDisposition } from '../../src/download/disposition.ts';
import { nameFromUrl, sanitizeFileName } from '../../src/download/file-name.ts';
import { HostPolicy, parseDownloadUrl } from '../../src/download/url-policy.ts';
import { FerryError } from '../../src/errors.ts';

const DEFAULT_DENY = ['169.254.0.0/16', 'fe80::/10', '100.100.100.200', 'metadata.google.internal'];

const refused = (fn: () => unknown, code: string, message: RegExp) =>
  assert.throws(
    fn,
    (err: unknown) => err instanceof FerryError && err.code === code && message.test(err.message),
  );

describe('offline download names', () => {
  it('never yields a path, a dot name or a temp name', () => {
    assert.equal(sanitizeFileName('../../etc/passwd'), '.._.._etc_passwd');
    assert.equal(sanitizeFileName('..'), 'download');
    assert.equal(sanitizeFileName('a\\b\u0000c\nd'), 'a_b_c_d');
    assert.equal(sanitizeFileName('.ferry-tmp-abc'), '_ferry-tmp-abc');
    const long = sanitizeFileName(`${'é'.repeat(200)}.tar.gz`);
    assert.ok(Buffer.byteLength(long) <= 255 && long.endsWith('.gz'));
  });

  it('takes the URL segment (decoded) or a magnet dn, and Content-Disposition with filename* first', () => {
    assert.equal(nameFromUrl(new URL('http://h/dir/r%C3%A9sum%C3%A9.pdf?x=1')), 'résumé.pdf');
    assert.equal(nameFromUrl(new URL('http://h/a%2F..%2Fb')), 'a_.._b');
    assert.equal(nameFromUrl(new URL('http://h/')), 'h');
    assert.equal(nameFromUrl(new URL('magnet:?xt=urn:btih:abc&dn=My%20Linux.iso')), 'My Linux.iso');
    assert.equal(
      nameFromDisposition(`attachment; filename="plain.bin"; filename*=UTF-8''%E4%BD%A0%E5%A5%BD.bin`),
      '你好.bin',
    );
    assert.equal(nameFromDisposition('attachment; filename="../../x.sh"'), '.._.._x.sh');
    assert.equal(nameFromDisposition('attachment; filename=broken name.txt'), 'broken name.txt');
    assert.equal(nameFromDisposition(undefined), null);
  });
});

describe('offline download URL rules', () => {
  it('accepts http, https, ftp and magnet only; SimpleHttp only http(s)', () => {
    assert.equal(parseDownloadUrl('https://example.com/a', 'SimpleHttp').host, 'example.com');
    assert.equal(parseDownloadUrl('magnet:?xt=urn:btih:abc', 'aria2').protocol, 'magnet:');
    assert.equal(parseDownloadUrl('ftp://example.com/a', 'aria2').protocol, 'ftp:');
    refused(() => parseDownloadUrl('file:///etc/passwd', 'aria2'), 'E_BAD_REQUEST', /scheme file:/);
    refused(() => parseDownloadUrl('javascript:alert(1)', 'aria2'), 'E_BAD_REQUEST', /scheme/);
    refused(() => parseDownloadUrl('ftp://example.com/a', 'SimpleHttp'), 'E_BAD_REQUEST', /use aria2/);
    refused(() => parseDownloadUrl(42, 'SimpleHttp'), 'E_BAD_REQUEST', /non-empty string/);
  });

  it('denies link-local and metadata addresses, however spelled; allows loopback by default', () => {
    const policy = new HostPolicy({ allowHosts: [], denyHosts: DEFAULT_DENY });
    for (const host of ['169.254.169.254', '[fe80::1]', '[::ffff:169.254.169.254]', '100.100.100.200'])
      refused(() => policy.checkName(new URL(`http://${host}/`).hostname), 'E_FORBIDDEN', /is blocked/);
    refused(() => policy.checkName('metadata.google.internal'), 'E_FORBIDDEN', /is blocked/);
    refused(() => policy.checkAddress('169.254.1.2', 'sneaky.example'), 'E_FORBIDDEN', /sneaky\.example/);
    // Decimal/hex spellings are normalised by the URL parser before the check.
    refused(() => policy.checkName(new URL('http://0xa9fea9fe/').hostname), 'E_FORBIDDEN', /is blocked/);
    policy.checkName('127.0.0.1');
    policy.checkAddress('::1', 'localhost');
    policy.checkName('example.com');
  });

  it('with an allow list, admits only what it lists (names cover subdomains, CIDR ranges)', () => {
    const policy = new HostPolicy({
      allowHosts: ['example.com', '10.0.0.0/8'],
      denyHosts: ['bad.example.com'],
    });
    policy.checkAddress('93.184.216.34', 'cdn.example.com');
    policy.checkAddress('10.1.2.3', 'nas.lan');
    refused(
      () => policy.checkAddress('192.168.1.1', 'router.lan'),
      'E_FORBIDDEN',
      /is not in offlineDownload\.allowHosts/,
    );
    refused(() => policy.checkName('bad.example.com'), 'E_FORBIDDEN', /denyHosts/);
  });
});
