/** AList's roles. */
export const ROLE = { GENERAL: 0, GUEST: 1, ADMIN: 2 } as const;

/** AList's permission bits (the ones ferry enforces). Admins have all of them. */
export const PERMISSION = {
  OFFLINE_DOWNLOAD: 1 << 2,
  WRITE: 1 << 3,
  RENAME: 1 << 4,
  MOVE: 1 << 5,
  COPY: 1 << 6,
  REMOVE: 1 << 7,
  /** List the entries of an archive (AList's `CanReadArchives`). */
  READ_ARCHIVES: 1 << 12,
  /** Extract an archive as a task (AList's `CanDecompress`). */
  DECOMPRESS: 1 << 13,
} as const;
export type Permission = keyof typeof PERMISSION;

/** What `ferry user add` grants a general user unless told otherwise: every file operation. */
export const DEFAULT_GENERAL_PERMISSION = Object.values(PERMISSION).reduce((a, b) => a | b, 0);

/** Who is making a request, as the API layer passes it to services. */
export interface Principal {
  id: number;
  username: string;
  role: number;
  /** Root of this user's view of the virtual file system. */
  basePath: string;
  permission: number;
}

export function isAdmin(p: Principal): boolean {
  return p.role === ROLE.ADMIN;
}

export function isGuest(p: Principal): boolean {
  return p.role === ROLE.GUEST;
}

export function can(p: Principal, permission: Permission): boolean {
  return isAdmin(p) || (p.permission & PERMISSION[permission]) !== 0;
}
