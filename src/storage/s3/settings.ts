import { FerryError } from '../../errors.ts';

/** AList's `addition` fields of the S3 driver. */
export interface S3Settings {
  bucket: string;
  endpoint?: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  forcePathStyle?: boolean;
  /** Key prefix the mount starts at ('' for the whole bucket). */
  rootFolderPath?: string;
}

/** Read AList's `addition` for S3 (`access_key_id`, …); E_STORAGE_CONFIG when required ones are missing. */
export function s3Settings(addition: Record<string, unknown>): S3Settings {
  const str = (key: string) => (typeof addition[key] === 'string' ? (addition[key] as string) : undefined);
  const bucket = str('bucket');
  const accessKeyId = str('access_key_id');
  const secretAccessKey = str('secret_access_key');
  if (!bucket || !accessKeyId || !secretAccessKey) {
    throw new FerryError('E_STORAGE_CONFIG', 'S3 needs bucket, access_key_id and secret_access_key');
  }
  return {
    bucket,
    accessKeyId,
    secretAccessKey,
    ...(str('endpoint') && { endpoint: str('endpoint') }),
    ...(str('region') && { region: str('region') }),
    ...(str('session_token') && { sessionToken: str('session_token') }),
    forcePathStyle: addition.force_path_style === true || addition.force_path_style === 'true',
    rootFolderPath: str('root_folder_path') ?? '',
  };
}
