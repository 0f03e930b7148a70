// Where the login guard keeps lock-outs (login_guard.ts): the MDM's database (table
// login_lockout, migration 0008), so a lock survives an MDM restart and, as every table is
// replicated in HA mode (row_capture.ts, committed by the leader gate with the answer), a
// takeover. Invariant: one row per locked user at most; rows are written only when a user becomes
// locked and deleted when its lock is cleared, never per failed or successful login.

import { eq, lt } from "drizzle-orm";
import type { MdmDb } from "../../store/mdm_db.ts";
import { loginLockoutTable } from "../../store/mdm_schema.ts";

export interface StoredLockout {
  userName: string;
  lockedUntilMs: number;
}

export interface LockoutStore {
  /** every lock recorded (ended ones too, until cleared) */
  load(): StoredLockout[];
  /** userName is locked from atMs until untilMs (replaces an older lock; drops locks ended before atMs) */
  lock(userName: string, atMs: number, untilMs: number): void;
  clear(userName: string): void;
}

export function dbLockouts(store: MdmDb): LockoutStore {
  return {
    load: () => store.db.select({ userName: loginLockoutTable.userName, lockedUntilMs: loginLockoutTable.lockedUntilMs }).from(loginLockoutTable).all(),
    lock: (userName, atMs, untilMs) => {
      store.db.delete(loginLockoutTable).where(lt(loginLockoutTable.lockedUntilMs, atMs)).run();
      store.db
        .insert(loginLockoutTable)
        .values({ userName, lockedAtMs: atMs, lockedUntilMs: untilMs })
        .onConflictDoUpdate({ target: loginLockoutTable.userName, set: { lockedAtMs: atMs, lockedUntilMs: untilMs } })
        .run();
    },
    clear: (userName) => {
      store.db.delete(loginLockoutTable).where(eq(loginLockoutTable.userName, userName)).run();
    },
  };
}

/** No persistence (a guard on its own, e.g. in unit tests). */
export function memoryOnlyLockouts(): LockoutStore {
  return { load: () => [], lock: () => {}, clear: () => {} };
}
