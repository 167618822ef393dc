import { FerryError } from '../errors.ts';
import type { ArchiveFormat, ArchiveListing, ExtractJob } from './formats.ts';

// The format readers (zip.js, node-tar) are imported on first use: a server that never opens an
// archive does not hold them in memory.

export { type ArchiveEntry, type ArchiveFormat, archiveStem, formatOf } from './formats.ts';
export { ExtractionGuard } from './guard.ts';
export { sevenZipBinary } from './seven-zip.ts';

/**
 * The entries of an archive on the local disk, without extracting it. Zip entry names are
 * readable without the password; 7z archives with encrypted headers need it
 * (`E_ARCHIVE_PASSWORD`). Damaged archives are `E_ARCHIVE_FORMAT`, unsafe names `E_ARCHIVE_UNSAFE`.
 */
export async function listArchive(
  file: string,
  format: ArchiveFormat,
  password: string,
  signal: AbortSignal,
): Promise<ArchiveListing> {
  switch (format) {
    case 'zip': {
      const { checkZipPassword, listZip } = await import('./zip.ts');
      const listing = await listZip(file);
      if (password && listing.encrypted) await checkZipPassword(file, password);
      return listing;
    }
    case '7z':
    case 'rar':
      return (await import('./seven-zip.ts')).listSevenZip(file, password, signal, format);
    default:
      return (await import('./tar.ts')).listTar(file, format, signal);
  }
}

/**
 * Extract an archive on the local disk into `job.tree` (see `ExtractJob`). Returns, or throws,
 * only once every file write it started has ended.
 */
export async function extractArchive(format: ArchiveFormat, job: ExtractJob): Promise<void> {
  try {
    await extractFormat(format, job);
  } catch (err) {
    await job.tree.settle().catch(() => undefined);
    throw err;
  }
  await job.tree.settle();
}

async function extractFormat(format: ArchiveFormat, job: ExtractJob): Promise<void> {
  switch (format) {
    case 'zip':
      return (await import('./zip.ts')).extractZip(job);
    case '7z':
    case 'rar':
      return (await import('./seven-zip.ts')).extractSevenZip(job, format);
    case 'tar':
    case 'tar.gz':
    case 'tar.bz2':
    case 'tar.xz':
    case 'tar.zst':
      return (await import('./tar.ts')).extractTar(job, format);
    default:
      throw new FerryError('E_ARCHIVE_FORMAT', `unsupported archive format: ${String(format)}`);
  }
}
