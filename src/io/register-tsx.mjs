/**
 * Preloaded (`--import`) into a worker thread started from the TypeScript sources (tests,
 * `npm run dev`; see module-thread.ts): on Node 20 a worker does not inherit its parent's tsx
 * loader, so it registers its own before its `.ts` module is loaded. Plain JavaScript, since
 * nothing could load TypeScript yet. The bundle `npm run build` makes never loads this file.
 */
import { register } from 'tsx/esm/api';

register();
