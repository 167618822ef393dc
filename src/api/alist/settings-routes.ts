import type { FastifyInstance, FastifyRequest } from 'fastify';
import { archiveEndings } from '../../archive/formats.ts';
import { FerryError } from '../../errors.ts';
import {
  ABSENT_FEATURES,
  type SettingDefinition,
  type SettingPage,
} from '../../settings/setting-catalogue.ts';
import type { SettingChange, SettingsSnapshot } from '../../settings/site-settings.ts';
import { adminRoutes } from './admin-route.ts';
import { ok } from './envelope.ts';
import { envelope } from './schemas.ts';

/** AList's setting groups: the settings page each number stands for. */
const GROUPS: Readonly<Record<SettingPage, number>> = {
  site: 1,
  style: 2,
  preview: 3,
  global: 4,
  offline: 5,
  index: 6,
  traffic: 11,
};

/** AList's setting flags. */
const FLAG = { public: 0, private: 1, readOnly: 2 } as const;

/** Most settings one save takes (AList has about 150 in all). */
const MAX_SAVE = 1000;

/** A setting as AList's `admin/setting/*` answer it. */
function itemView(d: SettingDefinition, value: string, index: number) {
  return {
    key: d.key,
    value,
    // AList's help is a translation key the UI looks up; ferry's settings have none of their own.
    help: '',
    type: d.type,
    options: d.options ?? '',
    group: GROUPS[d.page],
    flag: d.readOnly ? FLAG.readOnly : d.public ? FLAG.public : FLAG.private,
    index,
  };
}

/** `group=3` or `groups=5,0` (AList's query): the group numbers asked for, or null for all. */
function groupsOf(request: FastifyRequest): Set<number> | null {
  const q = request.query as { group?: unknown; groups?: unknown };
  const raw = typeof q.groups === 'string' && q.groups !== '' ? q.groups : q.group;
  if (raw === undefined || raw === '') return null;
  if (typeof raw !== 'string') throw new FerryError('E_BAD_REQUEST', 'group must be a number');
  const groups = raw.split(',').map((part) => Number(part));
  if (!groups.every((g) => Number.isInteger(g) && g >= 0))
    throw new FerryError('E_BAD_REQUEST', 'group must be a number');
  return new Set(groups);
}

function keyOf(request: FastifyRequest): string {
  const key = (request.query as { key?: unknown }).key;
  if (typeof key !== 'string' || key === '') throw new FerryError('E_BAD_REQUEST', 'key is required');
  return key;
}

function changesOf(body: unknown): SettingChange[] {
  if (!Array.isArray(body))
    throw new FerryError('E_BAD_REQUEST', 'body must be a JSON array of settings ({"key", "value"})');
  if (body.length > MAX_SAVE) throw new FerryError('E_BAD_REQUEST', `at most ${MAX_SAVE} settings at once`);
  return body.map((item, i) => {
    if (typeof item !== 'object' || item === null || typeof (item as { key?: unknown }).key !== 'string')
      throw new FerryError('E_BAD_REQUEST', `setting ${i}: an object with a string "key" is required`);
    const { key, value } = item as { key: string; value?: unknown };
    return { key, value };
  });
}

/**
 * AList's settings API over `core.settings`:
 * - `/api/public/settings` (anyone, any method): the settings the web UI reads, by key;
 * - `/api/public/archive_extensions`: the name endings ferry extracts;
 * - `/api/admin/setting/list|get|save|default|delete` (admins): what the settings pages show
 *   and save. A save takes the whole page, applies at once and answers before the UI reloads
 *   `/api/public/settings`. Unknown keys, values of the wrong kind, and changed read-only values
 *   are refused with code 400, and then nothing of that save is stored.
 */
export async function alistSettingsRoutes(app: FastifyInstance): Promise<void> {
  const { settings } = app.core;
  const definitions = settings.definitions;
  const items = (snapshot: SettingsSnapshot, pick: (d: SettingDefinition) => boolean, value = snapshot.get) =>
    definitions.flatMap((d, index) => (pick(d) ? [itemView(d, value(d.key), index)] : []));

  const tags = ['alist settings'];
  app.route({
    method: ['GET', 'POST'],
    url: '/api/public/settings',
    schema: { tags, response: envelope('key → value of the settings the web UI reads') },
    handler: async () => {
      const snapshot = settings.snapshot();
      const values: Record<string, string> = { ...ABSENT_FEATURES };
      for (const d of definitions) if (d.public) values[d.key] = snapshot.get(d.key);
      return ok(values);
    },
  });
  app.route({
    method: ['GET', 'POST'],
    url: '/api/public/archive_extensions',
    schema: { tags, response: envelope('the name endings ferry extracts') },
    handler: async () => ok(archiveEndings()),
  });

  const admin = adminRoutes(app, tags);
  const groupQuery = {
    type: 'object',
    properties: {
      group: { type: 'string', description: 'a group number' },
      groups: { type: 'string', description: 'comma-separated group numbers' },
    },
  };

  admin(
    'GET',
    '/api/admin/setting/list',
    async (request) => {
      const groups = groupsOf(request);
      return items(settings.snapshot(), (d) => groups === null || groups.has(GROUPS[d.page]));
    },
    { querystring: groupQuery, reply: '[setting]' },
  );
  admin(
    'GET',
    '/api/admin/setting/get',
    async (request) => {
      const { key, keys } = request.query as { key?: unknown; keys?: unknown };
      const snapshot = settings.snapshot();
      if (typeof key === 'string' && key !== '') {
        const [item] = items(snapshot, (d) => d.key === key);
        if (!item) throw new FerryError('E_BAD_REQUEST', `unknown setting "${key}"`);
        return item;
      }
      const wanted = new Set(typeof keys === 'string' ? keys.split(',') : []);
      return items(snapshot, (d) => wanted.has(d.key));
    },
    {
      querystring: {
        type: 'object',
        properties: {
          key: { type: 'string' },
          keys: { type: 'string', description: 'comma-separated keys' },
        },
      },
      reply: 'a setting (key) or [setting] (keys)',
    },
  );
  admin(
    'POST',
    '/api/admin/setting/save',
    async (request) => {
      await settings.save(changesOf(request.body));
      return null;
    },
    { body: { description: 'a JSON array of {key, value}: the whole settings page' } },
  );
  // "Load default" on a settings page: the defaults to edit, not saved until the page is.
  admin(
    'POST',
    '/api/admin/setting/default',
    async (request) => {
      const groups = groupsOf(request);
      const snapshot = settings.snapshot();
      return items(
        snapshot,
        (d) => groups === null || groups.has(GROUPS[d.page]),
        (key) => {
          const d = settings.definition(key);
          return d && !d.readOnly ? d.default : snapshot.get(key);
        },
      );
    },
    { querystring: groupQuery, reply: '[setting] with default values' },
  );
  // AList deletes a setting it no longer knows; every setting ferry shows is known, so this
  // puts one back to its default.
  admin(
    'POST',
    '/api/admin/setting/delete',
    async (request) => {
      await settings.reset(keyOf(request));
      return null;
    },
    { querystring: { type: 'object', properties: { key: { type: 'string' } } } },
  );
}
