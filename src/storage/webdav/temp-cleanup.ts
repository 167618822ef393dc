/**
 * The clean-up of the WebDAV driver's temp files: a failed write's or copy's temp sibling is
 * deleted at once and again a little later, unless a new attempt has taken the name meanwhile.
 */
export class TempCleanup {
  /** Temp files of failed writes that are deleted again a little later (see `discard`). */
  private readonly lingering = new Map<string, symbol>();
  private closed = false;

  /** `remove` deletes one temp file (a server path); its failures are ignored. */
  constructor(private readonly remove: (temp: string) => Promise<void>) {}

  /**
   * Delete the temp file of a failed write or copy. Servers built on Go's x/net/webdav (rclone,
   * AList) may still be busy with the broken PUT and commit its partial file after our DELETE, so
   * the DELETE is repeated in the background after 1 s and after 5 s, unless a new write to the
   * same temp name (a retry with the same key) has started meanwhile.
   */
  async discard(temp: string): Promise<void> {
    const attempt = () => this.remove(temp).catch(() => undefined);
    await attempt();
    const token = Symbol(temp);
    this.lingering.set(temp, token);
    const current = () => !this.closed && this.lingering.get(temp) === token;
    const later = (delays: number[]) => {
      const [delay, ...rest] = delays;
      if (delay === undefined) {
        if (current()) this.lingering.delete(temp);
        return;
      }
      const run = async () => {
        if (!current()) return;
        await attempt();
        later(rest);
      };
      setTimeout(() => void run(), delay).unref();
    };
    later([1000, 4000]);
  }

  /** A new write or copy to `temp` calls off the pending clean-up of an earlier attempt. */
  keep(temp: string): void {
    this.lingering.delete(temp);
  }

  /** Calls off every pending clean-up: the driver is closing. */
  close(): void {
    this.closed = true;
    this.lingering.clear();
  }
}
