import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { S3Driver, s3Settings } from '../../src/storage/s3/s3-driver.ts';
import { type S3Server, startS3Server } from '../helpers/s3-server.ts';
import { codeOf, runDriverConformance } from './driver-conformance.ts';

let server: S3Server;
before(async () => {
  server = await startS3Server();
});
after(() => server.close());

const settings = (extra: Record<string, unknown> = {}) =>
  s3Settings({
    bucket: server.bucket,
    endpoint: server.endpoint,
    region: 'us-east-1',
    access_key_id: server.accessKeyId,
    secret_access_key: server.secretAccessKey,
    force_path_style: true,
    ...extra,
  });

// Each suite under its own prefix of the one bucket: a fresh, empty storage.
runDriverConformance('S3', async () => ({
  driver: await S3Driver.open(settings({ root_folder_path: `/suite-${randomBytes(4).toString('hex')}` })),
  cleanup: async () => undefined,
}));

describe('S3 driver', () => {
  // s3rver accepts any signature, so wrong credentials cannot be shown against it; a missing
  // bucket takes the same path (HeadBucket at mount time fails).
  it('refuses a missing bucket at mount time with a clear error, and incomplete settings', async () => {
    await assert.rejects(
      S3Driver.open(settings({ bucket: 'no-such-bucket' })),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'E_STORAGE_CONFIG');
        assert.match(err.message, /cannot use bucket no-such-bucket/);
        return true;
      },
    );
    assert.throws(() => s3Settings({ bucket: 'b' }), { code: 'E_STORAGE_CONFIG' });
  });

  it('keeps a mount inside its root prefix', async () => {
    const inner = await S3Driver.open(settings({ root_folder_path: '/jail' }));
    assert.equal(await codeOf(inner.stat('/../outside')), 'E_PATH_OUTSIDE_ROOT');
    await inner.close();
  });
});
