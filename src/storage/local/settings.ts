import { isAbsolute, resolve } from 'node:path';
import { FerryError } from '../../errors.ts';

/**
 * Read AList's `addition` for Local: `root_folder_path`, the folder on this server the storage
 * shows, absolute or relative to ferry's data directory. E_STORAGE_CONFIG when it is missing.
 */
export function localRoot(addition: Record<string, unknown>, dataDir: string): string {
  const root = addition.root_folder_path;
  if (typeof root !== 'string' || root === '')
    throw new FerryError('E_STORAGE_CONFIG', 'Local needs root_folder_path');
  return isAbsolute(root) ? root : resolve(dataDir, root);
}
