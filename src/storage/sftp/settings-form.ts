import { type SettingItem, setting } from '../settings-form.ts';

/**
 * The SFTP driver's settings as AList's form shows them: what `sftpSettings` reads, in AList's
 * order. A password or a private key (with its passphrase when encrypted) is needed.
 */
export const SFTP_SETTINGS_FORM: readonly SettingItem[] = [
  setting('address', 'string', { required: true }),
  setting('username', 'string', { required: true }),
  setting('private_key', 'text'),
  setting('password', 'string'),
  setting('passphrase', 'string'),
  setting('root_folder_path', 'string', { default: '/', required: true }),
];
