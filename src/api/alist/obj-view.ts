/**
 * How AList renders one file or folder (`ObjResp` in OpenList's `server/handles/fsread.go`): the
 * one shape `fs/list`, `fs/get`, `fs/get`'s `related` and the archive listings share.
 */

/** AList's object types (`internal/conf/const.go`). */
export const OBJ_TYPE = { UNKNOWN: 0, FOLDER: 1, VIDEO: 2, AUDIO: 3, TEXT: 4, IMAGE: 5 } as const;

/**
 * AList's default preview lists (settings `audio_types`, `video_types`, `image_types`,
 * `text_types` in `internal/bootstrap/data/setting.go`). ferry has no settings page for them, so
 * the defaults are the lists.
 */
const TYPE_LISTS: readonly [number, string][] = [
  [OBJ_TYPE.AUDIO, 'mp3,flac,ogg,m4a,wav,opus,wma'],
  [OBJ_TYPE.VIDEO, 'mp4,mkv,avi,mov,rmvb,webm,flv,m3u8'],
  [OBJ_TYPE.IMAGE, 'jpg,tiff,jpeg,png,gif,bmp,svg,ico,swf,webp,avif'],
  [
    OBJ_TYPE.TEXT,
    'txt,htm,html,xml,java,properties,sql,js,md,json,conf,ini,vue,php,py,bat,gitignore,yml,go,sh,c,cpp,h,hpp,tsx,vtt,srt,ass,rs,lrc,strm',
  ],
];

const TYPE_BY_EXT = new Map<string, number>();
// AList checks audio, video, image, text in that order; the first list naming an extension wins.
for (const [type, list] of TYPE_LISTS)
  for (const ext of list.split(',')) if (!TYPE_BY_EXT.has(ext)) TYPE_BY_EXT.set(ext, type);

/**
 * A name's extension as Go's `path.Ext` sees it, lower-cased and without the dot: what follows
 * the last `.` (`''` when there is none; `.gitignore` → `gitignore`).
 */
export function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
}

/**
 * AList's type number of an object (`utils.GetObjType`): 1 for a folder, else by the extension
 * (2 video, 3 audio, 4 text, 5 image), 0 when unknown. AList's own `fs/get` types a folder by its
 * name (a folder called `x.mp4` reads as video there); ferry answers 1 for every folder, which is
 * what its `fs/list` says and what the web UI expects of a folder.
 */
export function objType(name: string, isDir: boolean): number {
  if (isDir) return OBJ_TYPE.FOLDER;
  return TYPE_BY_EXT.get(extensionOf(name)) ?? OBJ_TYPE.UNKNOWN;
}

/** One object as AList's JSON API shows it. */
export interface ObjView {
  name: string;
  size: number;
  is_dir: boolean;
  modified: string;
  created: string;
  /** The download link's sign (`?sign=`); `''` for folders and where nothing is signed. */
  sign: string;
  thumb: string;
  type: number;
  /** AList's hash info as a string (`"null"`: none known) and as an object. */
  hashinfo: string;
  hash_info: null;
}

/** What `objView` needs of a driver entry, a virtual folder or an archive entry. */
export interface ObjFacts {
  name: string;
  isDir: boolean;
  size: number;
  /** Modification time in ms since the epoch. */
  modified: number;
}

/** Render one object; `sign` is the sign of its download link (ignored for folders). */
export function objView(facts: ObjFacts, sign = ''): ObjView {
  const time = new Date(facts.modified).toISOString();
  return {
    name: facts.name,
    size: facts.size,
    is_dir: facts.isDir,
    modified: time,
    created: time,
    sign: facts.isDir ? '' : sign,
    thumb: '',
    type: objType(facts.name, facts.isDir),
    hashinfo: 'null',
    hash_info: null,
  };
}
