import { LOCAL_SETTINGS_FORM } from '../../storage/local/settings-form.ts';
import { S3_SETTINGS_FORM } from '../../storage/s3/settings-form.ts';
import { type SettingItem, setting } from '../../storage/settings-form.ts';
import { SFTP_SETTINGS_FORM } from '../../storage/sftp/settings-form.ts';
import { WEBDAV_SETTINGS_FORM } from '../../storage/webdav/settings-form.ts';

/** AList's `driver.Config` as its API shows it (`internal/driver/config.go`). */
export interface DriverConfig {
  name: string;
  local_sort: boolean;
  only_proxy: boolean;
  no_cache: boolean;
  no_upload: boolean;
  need_ms: boolean;
  default_root: string;
  alert: string;
  only_indices: boolean;
  prefer_proxy: boolean;
}

/** What `admin/driver/info` answers: the form of a storage using that driver. */
export interface DriverInfo {
  /** The storage fields every driver has (mount path, order, …), per AList's rules for this driver. */
  common: SettingItem[];
  /** The driver's own settings: the keys of `addition`. */
  additional: SettingItem[];
  config: DriverConfig;
}

/**
 * ferry's drivers, each with the flags of the AList driver of the same name (they decide which
 * common fields AList's form offers, so an AList user meets the same form) and the settings
 * ferry's driver reads. The names are those of `driverFactories` in `src/core.ts`.
 */
const DRIVERS: Record<string, { flags: Partial<DriverConfig>; additional: readonly SettingItem[] }> = {
  Local: { flags: { local_sort: true, only_proxy: true, no_cache: true }, additional: LOCAL_SETTINGS_FORM },
  S3: { flags: { local_sort: true, default_root: '/' }, additional: S3_SETTINGS_FORM },
  SFTP: { flags: { local_sort: true, only_proxy: true, default_root: '/' }, additional: SFTP_SETTINGS_FORM },
  WebDav: {
    flags: { local_sort: true, prefer_proxy: true, default_root: '/' },
    additional: WEBDAV_SETTINGS_FORM,
  },
};

/**
 * The common fields, built by AList's rules (`getMainItems` in `internal/op/driver.go`). ferry
 * stores and returns every one of them (so an Edit shows what was saved, and an AList backup
 * restores as it was) and acts on these: `mount_path`, `order` (sorts the mounts), `remark`, and
 * `disabled` (admin/storage/enable|disable). It keeps but does not act on the others, because
 * ferry has no such mechanism to tune: `cache_expiration` and `custom_cache_policies` (ferry lists
 * live, no cache), `web_proxy`, `webdav_policy`, `proxy_range`, `down_proxy_url` and
 * `disable_proxy_sign` (every download streams through ferry's `/d`; ferry serves no WebDAV),
 * `order_by`, `order_direction` and `extract_folder` (listings come in the driver's order; the
 * OpenList UI sorts by itself), `disable_index` (no search index) and `enable_sign` (the `/d`
 * links' signing is one server-wide rule).
 */
function commonItems(config: DriverConfig): SettingItem[] {
  const items = [
    setting('mount_path', 'string', {
      required: true,
      help: 'The path you want to mount to, it is unique and cannot be repeated',
    }),
    setting('order', 'number', { help: 'use to sort' }),
    setting('remark', 'text'),
  ];
  if (!config.no_cache) {
    items.push(
      setting('cache_expiration', 'number', {
        default: '30',
        required: true,
        help: 'The cache expiration time for this storage',
      }),
      setting('custom_cache_policies', 'text', { help: 'The cache expiration rules for this storage' }),
    );
  }
  if (config.only_proxy) {
    items.push(
      setting('webdav_policy', 'select', {
        default: 'native_proxy',
        options: 'use_proxy_url,native_proxy',
        required: true,
      }),
    );
  } else {
    items.push(
      setting('web_proxy', 'bool', config.prefer_proxy ? { default: 'true' } : {}),
      setting('webdav_policy', 'select', {
        default: config.prefer_proxy ? 'native_proxy' : '302_redirect',
        options: '302_redirect,use_proxy_url,native_proxy',
        required: true,
      }),
    );
  }
  items.push(
    setting('down_proxy_url', 'text'),
    setting('disable_proxy_sign', 'bool', {
      default: 'false',
      help: 'Disable sign for Download proxy URL',
    }),
  );
  if (config.local_sort) {
    items.push(
      setting('order_by', 'select', { options: 'name,size,modified' }),
      setting('order_direction', 'select', { options: 'asc,desc' }),
    );
  }
  items.push(
    setting('extract_folder', 'select', { options: 'front,back' }),
    setting('disable_index', 'bool', { default: 'false', required: true }),
    setting('enable_sign', 'bool', { default: 'false', required: true }),
  );
  return items;
}

/** The names `admin/driver/names` lists. */
export function driverNames(): string[] {
  return Object.keys(DRIVERS);
}

/** AList's driver info for `name`, or null for a driver ferry does not have. */
export function driverInfo(name: string): DriverInfo | null {
  if (!Object.hasOwn(DRIVERS, name)) return null;
  const driver = DRIVERS[name];
  if (!driver) return null;
  const config: DriverConfig = {
    name,
    local_sort: false,
    only_proxy: false,
    no_cache: false,
    no_upload: false,
    need_ms: false,
    default_root: '',
    alert: '',
    only_indices: false,
    prefer_proxy: false,
    ...driver.flags,
  };
  return { common: commonItems(config), additional: [...driver.additional], config };
}
