import { Cron } from 'croner';
import { FerryError } from '../errors.ts';
import type { JobSchedule } from '../store/job-store.ts';

/** Longest `every_seconds`: a year. */
const MAX_EVERY_SECONDS = 366 * 24 * 3600;

/**
 * Check a schedule where it enters: a 5-field cron (`m h dom mon dow`) with an optional IANA
 * time zone, or `every_seconds` (whole seconds, at least 1), not both. `E_BAD_REQUEST` otherwise.
 * `null`/absent is no schedule (the job runs only by hand).
 */
export function readSchedule(raw: unknown): JobSchedule | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad('schedule must be an object');
  const { cron, timezone, every_seconds: every } = raw as Record<string, unknown>;
  if (cron !== undefined && every !== undefined) throw bad('schedule takes cron or every_seconds, not both');
  if (every !== undefined) {
    if (!Number.isInteger(every) || (every as number) < 1 || (every as number) > MAX_EVERY_SECONDS)
      throw bad(`schedule.every_seconds must be an integer 1..${MAX_EVERY_SECONDS}`);
    return { everySeconds: every as number };
  }
  if (cron === undefined) {
    if (timezone !== undefined) throw bad('schedule.timezone needs schedule.cron');
    return null;
  }
  if (typeof cron !== 'string' || cron.trim().split(/\s+/).length !== 5)
    throw bad('schedule.cron must have five fields: minute hour day-of-month month day-of-week');
  if (timezone !== undefined && typeof timezone !== 'string') throw bad('schedule.timezone must be a string');
  const schedule: JobSchedule = { cron: cron.trim(), ...(timezone ? { timezone } : {}) };
  try {
    cronOf(schedule).nextRun();
  } catch (err) {
    throw new FerryError('E_BAD_REQUEST', `schedule: ${(err as Error).message}`, { cause: err });
  }
  return schedule;
}

/**
 * The first slot of a schedule after `now` (ms), or null for none. A periodic schedule keeps its
 * cadence from `slot` (the slot just taken); slots missed meanwhile (the server was down, or a
 * run was late) are passed over, so a missed run happens once, not once per slot missed.
 */
export function nextSlot(schedule: JobSchedule | null, now: number, slot?: number): number | null {
  if (!schedule) return null;
  if (schedule.everySeconds !== undefined) {
    const period = schedule.everySeconds * 1000;
    if (slot === undefined) return now + period;
    return slot + Math.max(1, Math.ceil((now + 1 - slot) / period)) * period;
  }
  if (schedule.cron === undefined) return null;
  return cronOf(schedule).nextRun(new Date(now))?.getTime() ?? null;
}

function cronOf(schedule: JobSchedule): Cron {
  return new Cron(schedule.cron ?? '', {
    paused: true,
    ...(schedule.timezone ? { timezone: schedule.timezone } : {}),
  });
}

function bad(message: string): FerryError {
  return new FerryError('E_BAD_REQUEST', message);
}
