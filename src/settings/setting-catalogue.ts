import type { Config, TaskKind } from '../config.ts';
import { FERRY_VERSION } from '../version.ts';

/** How a setting's value is spelled and edited (AList's setting types). */
export type SettingType = 'string' | 'text' | 'number' | 'bool' | 'select';

/** The settings page a setting shows on (AList's setting groups). */
export type SettingPage = 'site' | 'style' | 'preview' | 'global' | 'offline' | 'index' | 'traffic';

export interface SettingDefinition {
  /** AList's key: the web UI reads public settings by these names. */
  key: string;
  type: SettingType;
  page: SettingPage;
  /** In `/api/public/settings`, for every visitor; otherwise admins only. */
  public: boolean;
  /** Shown, but not changeable here (the catalogue says why). */
  readOnly: boolean;
  default: string;
  /** `select`: the allowed values, comma-separated. */
  options?: string;
  /** `number`: inclusive bounds. */
  min?: number;
  max?: number;
  /** The task kind whose worker count this is: saving it changes the runner's limit at once. */
  workers?: TaskKind;
}

/** Longest value a string or text setting takes. */
export const MAX_SETTING_LENGTH = 64 * 1024;

/** Where ferry's own logo is served (`api/web-ui.ts`): the default logo, favicon and audio cover. */
export const FERRY_LOGO_PATH = '/ferry-logo.svg';

/**
 * AList's worker settings (the `traffic` page), task kind by task kind. `delete` has none in
 * AList; ferry's is named the same way.
 */
const WORKER_KEYS: readonly [string, TaskKind][] = [
  ['offline_download_task_threads_num', 'offline_download'],
  ['offline_download_transfer_task_threads_num', 'offline_download_transfer'],
  ['upload_task_threads_num', 'upload'],
  ['copy_task_threads_num', 'copy'],
  ['move_task_threads_num', 'move'],
  ['delete_task_threads_num', 'delete'],
  ['decompress_download_task_threads_num', 'decompress'],
  ['decompress_upload_task_threads_num', 'decompress_upload'],
];

/**
 * Public settings of AList features ferry does not have, answered so that the web UI leaves
 * them out (no SSO, LDAP or passkey login buttons, no share previews, uploads in one request).
 * They show on no settings page: there is nothing to change.
 */
export const ABSENT_FEATURES: Readonly<Record<string, string>> = {
  sso_login_enabled: 'false',
  sso_compatibility_mode: 'false',
  ldap_login_enabled: 'false',
  webauthn_login_enabled: 'false',
  allow_indexed: 'false',
  share_preview: 'false',
  share_archive_preview: 'false',
  share_preview_download_by_default: 'false',
  share_preview_archives_by_default: 'false',
  // Chunked uploads (`/api/fs/multipart/*`) are not built; the UI then uploads in one request.
  multipart_enabled: 'false',
};

/**
 * Every setting ferry has, in the order the settings pages list them. What is here:
 * - settings the web UI itself acts on (title, colours, logo, paging, previews, hidden files):
 *   ferry stores them and hands them to every visitor;
 * - worker counts per task kind, applied to the runner at once;
 * - `customize_head`/`customize_body`, put into the served `index.html` as AList does;
 * - a few read-only ones that say how ferry is set up (its version, search off, aria2 from the
 *   config file): the UI's pages look them up and would show broken fields without them.
 * What is left out: AList settings of features ferry lacks (SSO, LDAP, S3 and FTP servers, link
 * signing, proxying, search indexes, speed limits, shares): their pages show empty.
 */
export function settingCatalogue(config: Config): SettingDefinition[] {
  const item = (
    key: string,
    page: SettingPage,
    type: SettingType,
    value: string,
    extra: Partial<SettingDefinition> = {},
  ): SettingDefinition => ({ key, page, type, default: value, public: true, readOnly: false, ...extra });
  const fixed = { readOnly: true };
  const admins = { public: false };
  return [
    item('version', 'site', 'string', `ferry ${FERRY_VERSION}`, fixed),
    item('site_title', 'site', 'string', 'ferry'),
    item('announcement', 'site', 'text', ''),
    item('pagination_type', 'site', 'select', 'all', { options: 'all,pagination,load_more,auto_load_more' }),
    item('default_page_size', 'site', 'number', '30', { min: 1, max: 1000 }),

    item('logo', 'style', 'text', FERRY_LOGO_PATH),
    item('favicon', 'style', 'string', FERRY_LOGO_PATH),
    item('main_color', 'style', 'string', '#1890ff'),
    item('home_icon', 'style', 'string', '🏠'),
    item('home_container', 'style', 'select', 'max_980px', { options: 'max_980px,hope_container' }),
    item('settings_layout', 'style', 'select', 'list', { options: 'list,responsive' }),
    item('show_disk_usage_in_plain_text', 'style', 'bool', 'false'),

    item('external_previews', 'preview', 'text', '{}'),
    item('iframe_previews', 'preview', 'text', IFRAME_PREVIEWS),
    item('audio_cover', 'preview', 'string', FERRY_LOGO_PATH),
    item('audio_autoplay', 'preview', 'bool', 'true'),
    item('video_autoplay', 'preview', 'bool', 'true'),
    item('preview_download_by_default', 'preview', 'bool', 'false'),
    item('preview_archives_by_default', 'preview', 'bool', 'true'),
    item('readme_autorender', 'preview', 'bool', 'true'),
    item('filter_readme_scripts', 'preview', 'bool', 'true'),

    item('hide_files', 'global', 'text', '/\\/README.md/i'),
    item('package_download', 'global', 'bool', 'true'),
    item('customize_head', 'global', 'text', '', admins),
    item('customize_body', 'global', 'text', '', admins),

    // The "other" page looks these up by key. ferry's aria2 is set in its config file
    // (offlineDownload.aria2; an empty URL: ferry starts its own aria2c), its secret never shown;
    // qBittorrent and Transmission ferry does not have.
    item('aria2_uri', 'offline', 'string', config.offlineDownload.aria2.rpcUrl, { ...admins, ...fixed }),
    item('aria2_secret', 'offline', 'string', '', { ...admins, ...fixed }),
    ...['qbittorrent_url', 'qbittorrent_seedtime', 'transmission_uri', 'transmission_seedtime'].map((key) =>
      item(key, 'offline', 'string', '', { ...admins, ...fixed }),
    ),

    // The indexes page shows this group; ferry has no search index.
    item('search_index', 'index', 'select', 'none', { ...fixed, options: 'none' }),

    ...WORKER_KEYS.map(([key, kind]) =>
      item(key, 'traffic', 'number', String(config.tasks.workers[kind]), {
        ...admins,
        min: 0,
        max: 256,
        workers: kind,
      }),
    ),
  ];
}

/** AList's default viewers that open a file from its link (the link leaves this server). */
const IFRAME_PREVIEWS = `{
  "doc,docx,xls,xlsx,ppt,pptx": {
    "Microsoft": "https://view.officeapps.live.com/op/view.aspx?src=$e_url",
    "Google": "https://docs.google.com/gview?url=$e_url&embedded=true"
  },
  "pdf": {
    "PDF.js": "https://res.oplist.org/pdf.js/web/viewer.html?file=$e_url"
  },
  "epub": {
    "EPUB.js": "https://res.oplist.org/epub.js/viewer.html?url=$e_url"
  }
}`;
