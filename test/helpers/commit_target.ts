// A device for GroupCommit unit tests: sync() is held until finish() (or fails when `fail` is
// set), so a test decides when each fdatasync ends; waiter() records what a request was told.

import type { CommitTarget } from "../../src/sds/group_commit.ts";

export class HeldSyncTarget implements CommitTarget {
  dirty = false;
  syncs = 0;
  pending: (() => void)[] = [];
  fail = false;
  clean(): void {
    this.dirty = false;
  }
  sync(): Promise<void> {
    this.syncs++;
    return new Promise((resolve, reject) => this.pending.push(() => (this.fail ? reject(new Error("EIO")) : resolve())));
  }
  finish(): void {
    const p = this.pending;
    this.pending = [];
    for (const f of p) f();
  }
}

export const waiter = () => {
  const w = { told: [] as boolean[], committed: (ok: boolean) => void w.told.push(ok) };
  return w;
};
