/**
 * Pieces of the AList dialect's route schemas. Replies are the envelope `{code, message, data}`;
 * `data` is left open (`{}`: any JSON), since its shape varies by route and flavour and a
 * response schema must never strip a field a client reads.
 */

/** The reply schema of an AList JSON route. */
export function envelope(description: string, data: object = {}) {
  return {
    200: {
      description,
      type: 'object',
      properties: {
        code: { type: 'integer', description: 'AList code: 200 success, else an HTTP-like error code' },
        message: { type: 'string' },
        data: { description: 'null in error replies', ...data },
      },
    },
  } as const;
}

/** A path as the caller names it (below its base path). */
export const PATH = { type: 'string', title: 'a path' } as const;

/** A plain file or folder name (no `/`, not `.` or `..`). */
export const NAME = { type: 'string', minLength: 1, title: 'a name' } as const;

/** A non-empty list of names, at most `max`. */
export function names(max: number) {
  return { type: 'array', minItems: 1, maxItems: max, items: NAME } as const;
}

/** An object body with `properties`; `required` names the fields that must be there. */
export function objectBody(properties: Record<string, object>, required: readonly string[] = []) {
  return { type: 'object', properties, required } as const;
}

/** `page`/`per_page` as AList's lists take them (in a body). */
export const PAGING = {
  page: { type: 'integer', description: 'page number, from 1' },
  per_page: { type: 'integer', description: 'entries per page; 0 or absent: all' },
} as const;
