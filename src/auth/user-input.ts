import { FerryError } from '../errors.ts';
import { ROLE } from './roles.ts';

/** A user as AList's API sends it (create, update); every field unchecked until used. */
export interface UserInput {
  username?: unknown;
  password?: unknown;
  base_path?: unknown;
  role?: unknown;
  permission?: unknown;
  disabled?: unknown;
}

/** E_BAD_REQUEST unless `value` is a non-empty string of at most 256 characters. */
export function requireString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '' || value.length > 256) {
    throw new FerryError('E_BAD_REQUEST', `${field} must be a non-empty string`);
  }
  return value;
}

/** undefined for absent (or null), else E_BAD_REQUEST unless a safe integer. */
export function optionalInt(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new FerryError('E_BAD_REQUEST', `${field} must be an integer`);
  return value;
}

/** undefined for absent, else E_BAD_REQUEST unless one of AList's three roles. */
export function optionalRole(value: unknown): number | undefined {
  const role = optionalInt(value, 'role');
  if (role !== undefined && role !== ROLE.GENERAL && role !== ROLE.GUEST && role !== ROLE.ADMIN) {
    throw new FerryError('E_BAD_REQUEST', 'role must be 0 (general), 1 (guest) or 2 (admin)');
  }
  return role;
}
