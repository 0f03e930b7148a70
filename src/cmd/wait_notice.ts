// "Still waiting" lines for a start-up step that takes a while: the first after
// FIRST_NOTICE_MS, then one every REPEAT_NOTICE_MS (sooner when what is awaited changes), each
// naming what is still awaited, so that an operator watching `pf up` knows what it waits for.

import { consola } from "consola";

const FIRST_NOTICE_MS = 3000;
const REPEAT_NOTICE_MS = 10_000;

export class WaitNotice {
  private readonly startMs = Date.now();
  private lastMs = 0;
  private lastText = "";

  constructor(private readonly prefix: string) {}

  /** Log `text` (what is still awaited) if it is time to. */
  update(text: string): void {
    const now = Date.now();
    if (now - this.startMs < FIRST_NOTICE_MS) return;
    const due = this.lastMs === 0 || now - this.lastMs >= REPEAT_NOTICE_MS || (text !== this.lastText && now - this.lastMs >= FIRST_NOTICE_MS);
    if (!due) return;
    this.lastMs = now;
    this.lastText = text;
    consola.info(`${this.prefix}: waiting ${Math.round((now - this.startMs) / 1000)} s for ${text}`);
  }
}
