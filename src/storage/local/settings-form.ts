import { type SettingItem, setting } from '../settings-form.ts';

/**
 * The Local driver's settings as AList's form shows them: what `localRoot` reads. AList's Local
 * also has thumbnail, hidden-file and recycle-bin fields; ferry's Local has none of those. The
 * root has no default: AList offers `/`, which would publish the whole server by one click.
 */
export const LOCAL_SETTINGS_FORM: readonly SettingItem[] = [
  setting('root_folder_path', 'string', { required: true }),
];
