import { access, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SettingsSnapshot } from '../settings/site-settings.ts';
import { CURRENT_PREFIX } from './alist/flavour.ts';

/** Where `scripts/fetch-web-ui.mjs` (run by `npm install`) puts the OpenList frontend. */
const INSTALLED_AT = join('node_modules', '.cache', 'ferry-web-ui');

/** The web UI's files as installed: its `dist/` folder, version and `index.html` as shipped. */
export interface WebUiFiles {
  dist: string;
  version: string;
  rawIndex: string;
}

/**
 * Find the installed web UI the way Node finds a package: in `node_modules` of this module's
 * folder or of any folder above it (so from the sources and from the `npm run build` bundle
 * alike). Null when it is not installed.
 */
export async function findWebUi(from: string = import.meta.dirname): Promise<WebUiFiles | null> {
  for (let dir = from; ; dir = dirname(dir)) {
    const root = join(dir, INSTALLED_AT);
    const dist = join(root, 'dist');
    if (await exists(join(dist, 'index.html'))) {
      const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version?: unknown };
      return {
        dist,
        version: typeof pkg.version === 'string' ? pkg.version : 'unknown',
        rawIndex: await readFile(join(dist, 'index.html'), 'utf8'),
      };
    }
    if (dirname(dir) === dir) return null;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * `index.html` with AList's placeholders filled, as OpenList's server does (`server/static`):
 * `window.OPENLIST_CONFIG` (assets from this server, served at `/`, the API under
 * `CURRENT_PREFIX` so the UI always gets today's AList answers, the main colour), the site title,
 * favicon and logo, and — on pages other than `/@manage` ones, so a broken customisation cannot
 * lock the admin out — `customize_head`/`customize_body`, which are admins' raw HTML by design.
 * `missing` names placeholders this frontend version no longer has.
 */
export function renderIndex(
  raw: string,
  settings: SettingsSnapshot,
  options: { manage: boolean },
): { html: string; missing: string[] } {
  const missing: string[] = [];
  let html = raw;
  const replace = (from: string, to: string) => {
    const at = html.indexOf(from);
    if (at < 0) missing.push(from);
    else html = html.slice(0, at) + to + html.slice(at + from.length);
  };
  replace('cdn: undefined', "cdn: ''");
  // Served at `/` only: behind a reverse proxy under a sub-path, the download links ferry makes
  // (`/d/…`) would miss the sub-path too, so a base path setting would only half work.
  replace('base_path: undefined', "base_path: '/'");
  replace('api: undefined', `api: location.origin + ${jsString(CURRENT_PREFIX)}`);
  replace('main_color: undefined', `main_color: ${jsString(settings.get('main_color'))}`);
  replace('https://res.oplist.org/logo/logo.svg', escapeHtml(settings.get('favicon')));
  replace('https://res.oplist.org/logo/logo.png', escapeHtml(firstLine(settings.get('logo'))));
  replace('<title>Loading...</title>', `<title>${escapeHtml(settings.get('site_title'))}</title>`);
  if (!options.manage) {
    replace('<!-- customize head -->', settings.get('customize_head'));
    replace('<!-- customize body -->', settings.get('customize_body'));
  }
  return { html, missing };
}

/** The PWA manifest (`/manifest.json`), named and iconed by the settings, as OpenList makes it. */
export function manifest(settings: SettingsSnapshot) {
  const logo = firstLine(settings.get('logo'));
  return {
    display: 'standalone',
    scope: '/',
    start_url: '/',
    name: settings.get('site_title'),
    icons: [{ src: logo, sizes: '512x512', type: logo.endsWith('.svg') ? 'image/svg+xml' : 'image/png' }],
  };
}

/** ferry's logo, the default logo and favicon: served by ferry, so it shows without internet. */
export const FERRY_LOGO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect width="64" height="64" rx="14" fill="#1890ff"/>
<path d="M22 36V26h20v10" fill="none" stroke="#fff" stroke-width="3"/>
<path d="M12 36h40l-7 9H19z" fill="#fff"/>
<path d="M10 52c4 3 7 3 11 0s7-3 11 0 7 3 11 0 7-3 11 0" fill="none" stroke="#fff" stroke-width="3" stroke-linecap="round"/>
</svg>
`;

/** The logo setting holds a light and a dark one on two lines; the page starts with the first. */
function firstLine(value: string): string {
  return value.split('\n')[0] ?? '';
}

/** A JavaScript string literal that cannot end the `<script>` it sits in. */
function jsString(value: string): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
