import { Ajv, type ErrorObject } from 'ajv';
import type { FastifyInstance } from 'fastify';

/**
 * AList's bodies are checked as sent: a number where a path belongs is refused, not turned into
 * the string `"42"` (Fastify's default validator coerces types, which suits query strings only,
 * where everything arrives as text). `verbose` keeps each error's schema, for the messages below.
 */
const bodies = new Ajv({
  coerceTypes: false,
  useDefaults: true,
  allErrors: false,
  strict: false,
  verbose: true,
});
const queries = new Ajv({
  coerceTypes: 'array',
  useDefaults: true,
  allErrors: false,
  strict: false,
  verbose: true,
});

/** Validate request bodies strictly and query strings and params leniently, in this plugin's scope. */
export function useAlistValidation(app: FastifyInstance): void {
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? bodies : queries).compile(schema),
  );
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  array: 'an array',
  object: 'an object',
};

/** `/names/0` → `names[0]`; the whole body or query when the path is empty. */
function fieldName(instancePath: string, part: string): string {
  if (instancePath === '') return part;
  return instancePath
    .slice(1)
    .split('/')
    .map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`))
    .join('');
}

/**
 * A validation failure as a sentence a client can act on, naming the field: `names must be a
 * non-empty array`, `src_dir must be a string (a path)`, `path is required (a path)`. A field
 * whose schema has a `title` gets it in brackets.
 */
export function validationMessage(errors: readonly ErrorObject[], part: string): string {
  const e = errors[0];
  if (!e) return `${part} is not valid`;
  const field = fieldName(e.instancePath, part);
  const schema = (e.parentSchema ?? {}) as {
    title?: string;
    properties?: Record<string, { title?: string }>;
  };
  const titled = (text: string, title = schema.title) => (title ? `${text} (${title})` : text);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required': {
      const missing = String(p.missingProperty);
      const name = field === part ? missing : `${field}.${missing}`;
      return titled(`${name} is required`, schema.properties?.[missing]?.title);
    }
    case 'type': {
      const types = String(p.type).split(',');
      return titled(`${field} must be ${types.map((t) => TYPE_WORDS[t] ?? t).join(' or ')}`);
    }
    case 'minItems':
      return p.limit === 1
        ? `${field} must be a non-empty array`
        : `${field} needs at least ${p.limit} items`;
    case 'maxItems':
      return `at most ${p.limit} ${field} at once`;
    case 'minLength':
      return p.limit === 1 ? titled(`${field} must not be empty`) : `${field} is too short`;
    case 'maxLength':
      return `${field} is too long (at most ${p.limit} characters)`;
    case 'enum':
      return `${field} must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'minimum':
    case 'maximum':
      return `${field} must be ${e.keyword === 'minimum' ? 'at least' : 'at most'} ${p.limit}`;
    default:
      return `${field} ${e.message ?? 'is not valid'}`;
  }
}
