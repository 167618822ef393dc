import { type SettingItem, setting } from '../settings-form.ts';

/**
 * The WebDav driver's settings as AList's form shows them: what `webdavSettings` reads, in
 * AList's order. `vendor` offers AList's two choices (the parser also takes nextcloud and
 * owncloud, which the OpenList UI has no labels for); ferry speaks to every vendor alike.
 */
export const WEBDAV_SETTINGS_FORM: readonly SettingItem[] = [
  setting('vendor', 'select', { default: 'other', options: 'sharepoint,other' }),
  setting('address', 'string', { required: true }),
  setting('username', 'string'),
  setting('password', 'string'),
  setting('root_folder_path', 'string', { default: '/', required: true }),
  setting('tls_insecure_skip_verify', 'bool', { default: 'false' }),
];
