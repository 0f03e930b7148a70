// Brute-force protection of REST logins:
// - lock-out: Limits.loginLockoutFailures failed logins in a row lock a user for
//   Limits.loginLockoutMs; while locked every login of that user is refused, the right password too;
//   a success resets the count; resetPassword by a manager lifts the lock. The lock itself is
//   persisted (LockoutStore: the MDM's database, so it survives a restart and an HA takeover),
//   written when a user becomes locked and cleared when the lock is lifted or a success follows
//   it; the count of failures in a row stays in memory (a restart forgives up to 9 of them);
// - rate limit by source address: each failure takes one of Limits.loginFailBurst tokens, refilled
//   one per Limits.loginFailRefillMs; an address without tokens may still log in with a password
//   proven within the last minute (the verified cache of auth.ts), never try a new one, so
//   PyPowerFlex's login before every request stays fast and unlimited;
// - at most Limits.loginMaxConcurrentHashes argon2id checks at once (each takes 64 MiB), at most
//   Limits.loginMaxWaiting logins waiting for one.
// Invariants: memory is bounded by Limits.loginGuardMaxEntries per map (oldest entries dropped);
// a login that succeeds writes nothing unless its user had a stored lock (then that row goes).

import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import { memoryOnlyLockouts, type LockoutStore } from "./lockout_store.ts";

interface UserFailures {
  inARow: number;
  lockedUntilMs: number;
  /** a row for this user's lock is in the store (to be cleared when the lock is) */
  stored: boolean;
}

interface AddressBucket {
  tokens: number;
  atMs: number;
}

export interface LoginGuardOptions {
  lockoutFailures?: number;
  lockoutMs?: number;
  failBurst?: number;
  failRefillMs?: number;
  maxConcurrentHashes?: number;
  maxWaiting?: number;
  maxEntries?: number;
}

export class LoginGuard {
  private readonly users = new Map<string, UserFailures>();
  private readonly addresses = new Map<string, AddressBucket>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly o: Required<LoginGuardOptions>;

  constructor(
    private readonly clock: () => number,
    opts: LoginGuardOptions = {},
    private readonly lockouts: LockoutStore = memoryOnlyLockouts(),
  ) {
    this.o = {
      lockoutFailures: opts.lockoutFailures ?? Limits.loginLockoutFailures,
      lockoutMs: opts.lockoutMs ?? Limits.loginLockoutMs,
      failBurst: opts.failBurst ?? Limits.loginFailBurst,
      failRefillMs: opts.failRefillMs ?? Limits.loginFailRefillMs,
      maxConcurrentHashes: opts.maxConcurrentHashes ?? Limits.loginMaxConcurrentHashes,
      maxWaiting: opts.maxWaiting ?? Limits.loginMaxWaiting,
      maxEntries: opts.maxEntries ?? Limits.loginGuardMaxEntries,
    };
    // locks recorded by this MDM before a restart, or by the previous leader (replicated rows)
    for (const l of this.lockouts.load()) this.remember(this.users, l.userName, { inARow: 0, lockedUntilMs: l.lockedUntilMs, stored: true });
  }

  /** ms left of a user's lock-out (0: not locked). */
  lockedForMs(userName: string): number {
    const u = this.users.get(userName);
    if (!u) return 0;
    return Math.max(0, u.lockedUntilMs - this.clock());
  }

  /** Throws the PowerFlex 401 when the user is locked out. */
  checkNotLocked(userName: string): void {
    const left = this.lockedForMs(userName);
    if (left > 0) {
      throw new PfError(
        "UNAUTHORIZED",
        `User ${userName} is locked: ${this.o.lockoutFailures} failed logins in a row; retry in ${Math.ceil(left / 1000)} s or ask an administrator to reset the password`,
      );
    }
  }

  /** May this address try a password nobody proved recently? */
  mayTryNewPassword(src: string): boolean {
    return this.bucket(src).tokens >= 1;
  }

  refusedForRate(src: string): PfError {
    const b = this.bucket(src);
    const waitMs = Math.ceil((1 - b.tokens) * this.o.failRefillMs);
    return new PfError("UNAUTHORIZED", `too many failed logins from ${src}; retry in ${Math.max(1, Math.ceil(waitMs / 1000))} s`);
  }

  /** A failed login: counts towards the user's lock-out (known users only) and the address's rate. */
  failed(userName: string | null, src: string): { lockedNow: boolean } {
    const b = this.bucket(src);
    b.tokens = Math.max(0, b.tokens - 1);
    if (userName === null) return { lockedNow: false };
    const u = this.users.get(userName) ?? { inARow: 0, lockedUntilMs: 0, stored: false };
    this.users.delete(userName);
    u.inARow++;
    let lockedNow = false;
    if (u.inARow >= this.o.lockoutFailures) {
      const now = this.clock();
      u.lockedUntilMs = now + this.o.lockoutMs;
      u.inARow = 0;
      lockedNow = true;
      this.lockouts.lock(userName, now, u.lockedUntilMs);
      u.stored = true;
    }
    this.remember(this.users, userName, u);
    return { lockedNow };
  }

  /**
   * A login's password checked out. Its lock check ran before the (async) hash, so failures in
   * parallel may have locked the user meanwhile: then the login is refused like any locked one
   * and the lock stays. Otherwise a lock that ended is cleared from the store.
   */
  succeeded(userName: string): void {
    const u = this.users.get(userName);
    if (u === undefined) return;
    if (u.lockedUntilMs > this.clock()) this.checkNotLocked(userName);
    this.users.delete(userName);
    if (u.stored) this.lockouts.clear(userName);
  }

  /** Lift a lock-out (resetPassword, removeUser), in the store too. */
  unlock(userName: string): void {
    this.users.delete(userName);
    this.lockouts.clear(userName);
  }

  /** Run fn while holding one of the hash slots. */
  async withHashSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.o.maxConcurrentHashes) {
      if (this.waiting.length >= this.o.maxWaiting) {
        throw new PfError("UNAVAILABLE", `${this.waiting.length} logins are waiting for a password check; retry in a moment`);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes on: running stays the same
      else this.running--;
    }
  }

  private bucket(src: string): AddressBucket {
    const now = this.clock();
    const b = this.addresses.get(src) ?? { tokens: this.o.failBurst, atMs: now };
    b.tokens = Math.min(this.o.failBurst, b.tokens + (now - b.atMs) / this.o.failRefillMs);
    b.atMs = now;
    this.addresses.delete(src);
    this.remember(this.addresses, src, b);
    return b;
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.set(key, value);
    while (map.size > this.o.maxEntries) {
      const oldest = map.keys().next().value;
      if (oldest === undefined) break;
      map.delete(oldest);
    }
  }
}
