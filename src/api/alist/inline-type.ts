import { extensionOf } from './obj-view.ts';

/**
 * Content types for `/p` (files shown inline: the web UI's previews, players, the "proxy" link),
 * by extension. It covers AList's preview lists (`obj-view.ts`) and a few documents; anything
 * else is `application/octet-stream`, which a browser downloads. Source code and other text
 * without a type of its own is `text/plain`, so a browser shows it instead of downloading it.
 */
const TYPES: Record<string, string> = {
  // text
  txt: 'text/plain',
  htm: 'text/html',
  html: 'text/html',
  xml: 'text/xml',
  js: 'text/javascript',
  css: 'text/css',
  md: 'text/markdown',
  json: 'application/json',
  vtt: 'text/vtt',
  csv: 'text/csv',
  // audio
  mp3: 'audio/mpeg',
  flac: 'audio/flac',
  ogg: 'audio/ogg',
  m4a: 'audio/mp4',
  wav: 'audio/wav',
  opus: 'audio/opus',
  wma: 'audio/x-ms-wma',
  aac: 'audio/aac',
  // video
  mp4: 'video/mp4',
  mkv: 'video/x-matroska',
  avi: 'video/x-msvideo',
  mov: 'video/quicktime',
  rmvb: 'application/vnd.rn-realmedia-vbr',
  webm: 'video/webm',
  flv: 'video/x-flv',
  m3u8: 'application/vnd.apple.mpegurl',
  ts: 'video/mp2t',
  // image
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  tiff: 'image/tiff',
  png: 'image/png',
  gif: 'image/gif',
  bmp: 'image/bmp',
  svg: 'image/svg+xml',
  ico: 'image/x-icon',
  swf: 'application/x-shockwave-flash',
  webp: 'image/webp',
  avif: 'image/avif',
  // documents
  pdf: 'application/pdf',
  epub: 'application/epub+zip',
};

/** AList's other text types: shown as plain text. */
const PLAIN_TEXT =
  'java,properties,sql,conf,ini,vue,php,py,bat,gitignore,yml,yaml,go,sh,c,cpp,h,hpp,tsx,srt,ass,rs,lrc,strm,log,toml';
for (const ext of PLAIN_TEXT.split(',')) TYPES[ext] ??= 'text/plain';

/** The content type to serve `name` inline with; text is declared UTF-8. */
export function inlineType(name: string): string {
  const type = TYPES[extensionOf(name)] ?? 'application/octet-stream';
  return type.startsWith('text/') ? `${type}; charset=utf-8` : type;
}

/**
 * Whether a browser opening a document of this type directly could run scripts in it (HTML,
 * SVG, XML with XSLT). Served from ferry's own origin, such a file must not reach the web UI's
 * stored token: it is sent with `Content-Security-Policy: sandbox`, which gives it an opaque
 * origin and no scripts.
 */
export function isScriptable(type: string): boolean {
  return /html|xml|svg/i.test(type);
}
