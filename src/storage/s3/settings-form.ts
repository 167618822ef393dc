import { type SettingItem, setting } from '../settings-form.ts';

/**
 * The S3 driver's settings as AList's form shows them: what `s3Settings` reads, in AList's order.
 * AList's presign, custom-host and direct-upload fields are left out: ferry streams every
 * download itself. `endpoint` may stay empty for AWS (the region picks it).
 */
export const S3_SETTINGS_FORM: readonly SettingItem[] = [
  setting('root_folder_path', 'string', { default: '/', required: true }),
  setting('bucket', 'string', { required: true }),
  setting('endpoint', 'string'),
  setting('region', 'string'),
  setting('access_key_id', 'string', { required: true }),
  setting('secret_access_key', 'string', { required: true }),
  setting('session_token', 'string'),
  setting('force_path_style', 'bool', { default: 'false' }),
];
