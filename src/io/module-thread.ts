import { Worker } from 'node:worker_threads';

/**
 * Start a worker thread running the module `name` that lies beside `base` (the caller's
 * `import.meta.url`): `<name>.ts` when the caller runs from the TypeScript sources under tsx
 * (tests, `npm run dev`), `<name>.js` when it runs from the bundle `npm run build` makes
 * (`scripts/build.mjs` makes that module an entry point of its own, in the folder of the chunks).
 *
 * From the sources the thread first imports `register-tsx.mjs` (an `--import` preload of that
 * thread alone): a worker does not inherit the tsx loader, and without one it cannot load a
 * `.ts` module.
 */
export function startModuleThread(name: string, base: string): Worker {
  if (!base.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, base));
  return new Worker(new URL(`./${name}.ts`, base), {
    execArgv: ['--import', new URL('./register-tsx.mjs', import.meta.url).href],
  });
}
