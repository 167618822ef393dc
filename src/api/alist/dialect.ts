import type { FastifyInstance } from 'fastify';
import type { AlistFlavour } from '../../config.ts';
import { alistAbsentFeatureRoutes } from './absent-feature-routes.ts';
import { alistAdminRoutes } from './admin-routes.ts';
import { alistArchiveRoutes } from './archive-routes.ts';
import { alistAuthRoutes } from './auth-routes.ts';
import { alistDownloadRoutes } from './download-routes.ts';
import { alistErrorHandler } from './error-handler.ts';
import { alistEventRoutes } from './event-routes.ts';
import { alistFsReadRoutes } from './fs-read-routes.ts';
import { alistFsRoutes } from './fs-routes.ts';
import { alistJobRoutes } from './job-routes.ts';
import { alistOfflineRoutes } from './offline-routes.ts';
import { alistSettingsRoutes } from './settings-routes.ts';
import { alistTaskRoutes } from './task-routes.ts';
import { alistUploadRoutes } from './upload-routes.ts';
import { useAlistValidation } from './validation.ts';
import { alistWebhookRoutes } from './webhook-routes.ts';

/**
 * AList's routes (`/api/…`, `/d/…`, `/p/…`), registered once at the root in the configured flavour
 * and once under `CURRENT_PREFIX` in today's AList flavour (`flavour.ts`). One error handler
 * answers for all of them (`error-handler.ts`); handlers only throw.
 */
export async function alistDialect(app: FastifyInstance, options: { flavour: AlistFlavour }): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.alistFlavour = options.flavour;
  });
  app.setErrorHandler(alistErrorHandler);
  useAlistValidation(app);
  await app.register(alistAuthRoutes);
  await app.register(alistAdminRoutes);
  await app.register(alistWebhookRoutes);
  await app.register(alistSettingsRoutes);
  await app.register(alistAbsentFeatureRoutes);
  await app.register(alistTaskRoutes);
  await app.register(alistEventRoutes);
  await app.register(alistFsReadRoutes);
  await app.register(alistFsRoutes);
  await app.register(alistJobRoutes);
  await app.register(alistUploadRoutes);
  await app.register(alistOfflineRoutes);
  await app.register(alistArchiveRoutes);
  await app.register(alistDownloadRoutes);
}
