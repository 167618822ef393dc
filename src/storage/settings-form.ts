/**
 * A driver's settings (AList's `addition`) described field by field, in the shape AList gives
 * each field of a driver (`internal/driver/item.go`), so that AList's Add Storage form can render
 * them and send back what the driver's settings parser reads. Each driver keeps its description
 * in `<driver>/settings-form.ts`, beside its parser; a test holds the two to the same keys.
 */

/** The input the form shows: text line, number, checkbox, text area, or a choice of `options`. */
export type SettingType = 'string' | 'number' | 'bool' | 'text' | 'select';

export interface SettingItem {
  /** The key in `addition`. */
  name: string;
  type: SettingType;
  /** The value a new storage starts with, as text (`"true"`, `"22"`), '' for none. */
  default: string;
  /** For `select`: the choices, comma-separated. */
  options: string;
  required: boolean;
  /**
   * What the field means, for API clients. The OpenList UI shows its own translated tip when this
   * is not empty, so it is left empty where AList's UI has no tip for the field.
   */
  help: string;
}

/** One field; everything not given is empty (not required, no default, no help). */
export function setting(
  name: string,
  type: SettingType,
  extra: Partial<Omit<SettingItem, 'name' | 'type'>> = {},
): SettingItem {
  return { name, type, default: '', options: '', required: false, help: '', ...extra };
}
