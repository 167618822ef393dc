import pkg from '../package.json' with { type: 'json' };

/** ferry's version, as package.json states it. */
export const FERRY_VERSION: string = pkg.version;
