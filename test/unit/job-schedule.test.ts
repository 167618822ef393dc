import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextSlot, readSchedule } from '../../src/jobs/schedule.ts';

describe('job schedules', () => {
  it('every_seconds keeps its cadence and folds the slots missed into one', () => {
    const every = { everySeconds: 10 };
    assert.equal(nextSlot(every, 1_000), 11_000, 'the first slot is one period after creation');
    assert.equal(nextSlot(every, 11_200, 11_000), 21_000, 'a late tick keeps the cadence');
    assert.equal(nextSlot(every, 21_000, 21_000), 31_000, 'a slot taken on time is followed by the next');
    assert.equal(nextSlot(every, 75_000, 11_000), 81_000, 'after downtime: the next slot after now, once');
  });

  it('cron: five fields in a time zone', () => {
    const schedule = readSchedule({ cron: '30 2 * * *', timezone: 'Europe/Berlin' });
    // 2026-07-01T00:00Z is 02:00 in Berlin (summer time): the next 02:30 there is 00:30 UTC.
    assert.equal(nextSlot(schedule, Date.parse('2026-07-01T00:00:00Z')), Date.parse('2026-07-01T00:30:00Z'));
    // In winter Berlin is UTC+1.
    assert.equal(nextSlot(schedule, Date.parse('2026-01-10T12:00:00Z')), Date.parse('2026-01-11T01:30:00Z'));
  });

  it('refuses what is not a schedule', () => {
    for (const bad of [
      'daily',
      { cron: '* * * * * *' },
      { cron: 5 },
      { every_seconds: 1.5 },
      { every_seconds: -1 },
      { timezone: 'UTC' },
      { cron: '61 * * * *' },
    ]) {
      assert.throws(() => readSchedule(bad), { code: 'E_BAD_REQUEST' }, JSON.stringify(bad));
    }
    assert.equal(readSchedule(null), null);
    assert.equal(nextSlot(null, 0), null);
  });
});
