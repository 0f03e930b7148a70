// A node's assignment or map fetch as its heartbeats see it (SDS: src/sds/main.ts, SDC:
// src/sdc/sdc_node.ts). An MDM that is behind sheds fetches and names each node's turn
// (src/mdm/cluster/fetch_shedding.ts), and a slow one may take seconds for a full list: the
// beats go on meanwhile, or the MDM declares a live node down while it waits for its answer.

import { busyRetryMs } from "./cluster_api.ts";

/** Tries of one fetch while the MDM keeps shedding it (its turns are at most ~10 s apart). */
export const BUSY_FETCH_TRIES = 100;

export type BeatWait = "done" | "shed" | "slow";

export class BeatFetch {
  private waitingTurn = false;
  private onShed: (() => void) | null = null;
  private wakeTurn: (() => void) | null = null;

  /** A fetch the MDM shed is waiting for its turn. */
  get waiting(): boolean {
    return this.waitingTurn;
  }

  /**
   * Run one fetch (`attempt` is called again for each try, so it can read what it asks for
   * afresh): while the MDM sheds it, wait for the turn it names, or until wake().
   */
  async run<T>(attempt: () => Promise<T>): Promise<T> {
    try {
      for (let tries = 1; ; tries++) {
        try {
          return await attempt();
        } catch (e) {
          const ms = busyRetryMs(e);
          if (ms === null || tries >= BUSY_FETCH_TRIES) throw e;
          this.waitingTurn = true;
          this.onShed?.();
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ms);
            this.wakeTurn = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wakeTurn = null;
        }
      }
    } finally {
      this.waitingTurn = false;
    }
  }

  /** Ask again now rather than at the turn (an urgent ask: the MDM serves it without one). */
  wake(): void {
    this.wakeTurn?.();
  }

  /**
   * How a beat waits for the fetch it started: "done" once it ended (its own error is the
   * caller's), "shed" as soon as the MDM shed it, "slow" after `intervalMs` (the next beat must
   * go out on time).
   */
  async await(fetch: Promise<void>, intervalMs: number): Promise<BeatWait> {
    let slowTimer: ReturnType<typeof setTimeout> | undefined;
    const shed = new Promise<"shed">((resolve) => (this.onShed = () => resolve("shed")));
    const slow = new Promise<"slow">((resolve) => (slowTimer = setTimeout(() => resolve("slow"), intervalMs)));
    try {
      return await Promise.race([fetch.then(() => "done" as const), shed, slow]);
    } finally {
      this.onShed = null;
      clearTimeout(slowTimer);
    }
  }
}
