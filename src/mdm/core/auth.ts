// REST logins and tokens. Passwords are stored only as argon2id hashes (Bun.password); tokens are
// random 32-byte strings stored only as their SHA-256, so a copied database grants nothing.
// Invariants:
// - a token is valid while used within the idle timeout and younger than the absolute timeout
//   (Limits.tokenIdleTimeoutMs / tokenAbsoluteTimeoutMs, injected clock); logout ends it;
// - at most Limits.maxTokens live at once (the least recently used is dropped); tokens live in
//   sqlite so they survive an MDM restart; last_used is written back at most once per
//   LAST_USED_WRITE_MS per token to keep sqlite off every request's path;
// - a token carries its user's role (and "must change password"); changing a user's role or
//   password updates that user's live tokens, removing the user drops them;
// - failed logins go through LoginGuard (lock-out, kept in the database; rate limit, bounded hashing); an unknown user
//   costs one hash like a known one, so names cannot be tested by timing.

import { randomBytes, timingSafeEqual } from "node:crypto";
import { eq, lt } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { MdmDb } from "../../store/mdm_db.ts";
import { tokenTable, userTable, type UserRow } from "../../store/mdm_schema.ts";
import { dbLockouts } from "./lockout_store.ts";
import { LoginGuard, type LoginGuardOptions } from "./login_guard.ts";
import { isRole, type Role } from "./roles.ts";

export const ADMIN_USER = "admin";
const LAST_USED_WRITE_MS = 60_000;
/** a successful password check is remembered this long (PyPowerFlex logs in twice per call) */
const VERIFIED_PASSWORD_CACHE_MS = 60_000;
const VERIFIED_CACHE_MAX = 1000;

// Bun.CryptoHasher.hash, not node:crypto's createHash: 0.3 µs a hash instead of 6.7 (Bun 1.4,
// a short string); these run on every REST and cluster API call
function sha256Hex(s: string): string {
  return Bun.CryptoHasher.hash("sha256", s, "hex");
}

export function newUserId(): string {
  return randomBytes(8).toString("hex");
}

/** Who a token belongs to, as every route sees it. */
export interface Principal {
  userName: string;
  role: Role;
  /** set by resetPassword / a generated password: only "self" routes until setPassword */
  mustChangePassword: boolean;
}

interface LiveToken extends Principal {
  createdAtMs: number;
  lastUsedMs: number;
  persistedLastUsedMs: number;
}

export interface TokenStoreOptions {
  idleTimeoutMs?: number;
  absoluteTimeoutMs?: number;
  maxTokens?: number;
  guard?: LoginGuardOptions;
}

export function roleOf(row: Pick<UserRow, "role">): Role {
  // the column is written only through isRole-checked paths; an unknown value is a broken invariant
  if (!isRole(row.role)) throw new Error(`invariant broken: stored user role ${JSON.stringify(row.role)} is a known role`);
  return row.role;
}

export class TokenStore {
  private readonly live = new Map<string, LiveToken>(); // insertion order = LRU order
  private readonly verified = new Map<string, number>(); // sha256(user:password:hash) -> expiry
  private readonly idleTimeoutMs: number;
  private readonly absoluteTimeoutMs: number;
  private readonly maxTokens: number;
  readonly guard: LoginGuard;
  private dummyHash: Promise<string> | null = null;

  constructor(
    private readonly store: MdmDb,
    private readonly clock: () => number,
    opts: TokenStoreOptions = {},
  ) {
    this.idleTimeoutMs = opts.idleTimeoutMs ?? Limits.tokenIdleTimeoutMs;
    this.absoluteTimeoutMs = opts.absoluteTimeoutMs ?? Limits.tokenAbsoluteTimeoutMs;
    this.maxTokens = opts.maxTokens ?? Limits.maxTokens;
    this.guard = new LoginGuard(clock, opts.guard, dbLockouts(store));
    const users = new Map(store.db.select().from(userTable).all().map((u) => [u.name, u]));
    const rows = store.db.select().from(tokenTable).orderBy(tokenTable.lastUsedMs).all();
    for (const r of rows) {
      const u = users.get(r.userName);
      if (!u) continue; // its user was removed
      this.live.set(r.hash, { ...principalOf(u), createdAtMs: r.createdAtMs, lastUsedMs: r.lastUsedMs, persistedLastUsedMs: r.lastUsedMs });
    }
    this.expire();
  }

  /** Set (or replace) a user's password hash; creates the user with `role` when missing. */
  async setPassword(userName: string, password: string, opts: { role?: Role; mustChange?: boolean } = {}): Promise<void> {
    const hash = await Bun.password.hash(password, { algorithm: "argon2id" });
    const mustChange = opts.mustChange ? 1 : 0;
    this.store.db
      .insert(userTable)
      .values({ name: userName, passwordHash: hash, role: opts.role ?? "SuperUser", createdAtMs: this.clock(), id: newUserId(), passwordChangeRequired: mustChange })
      .onConflictDoUpdate({ target: userTable.name, set: { passwordHash: hash, passwordChangeRequired: mustChange } })
      .run();
    this.verified.clear();
    this.refreshUser(userName);
  }

  hasUser(userName: string): boolean {
    return this.store.db.select({ n: userTable.name }).from(userTable).where(eq(userTable.name, userName)).get() !== undefined;
  }

  /** Does password match? Uses the verified cache; else one hash check (in a slot). */
  async checkPassword(userName: string, password: string, src = "local"): Promise<UserRow | null> {
    const user = userName.length > 0 ? this.store.db.select().from(userTable).where(eq(userTable.name, userName)).get() : undefined;
    const now = this.clock();
    if (user) {
      const until = this.verified.get(this.cacheKey(user, password));
      if (until !== undefined && until > now) return user;
    }
    if (!this.guard.mayTryNewPassword(src)) throw this.guard.refusedForRate(src);
    const ok = await this.guard.withHashSlot(async () => {
      if (!user) {
        // as costly as a real check, so unknown names cannot be told apart by timing
        await Bun.password.verify(password, await this.dummy());
        return false;
      }
      return Bun.password.verify(password, user.passwordHash);
    });
    if (!ok || !user) return null;
    if (this.verified.size >= VERIFIED_CACHE_MAX) this.verified.clear();
    this.verified.set(this.cacheKey(user, password), now + VERIFIED_PASSWORD_CACHE_MS);
    return user;
  }

  /** Check user:password and issue a token; throws UNAUTHORIZED (wrong, locked, rate limited). */
  async login(userName: string, password: string, src = "local"): Promise<{ token: string; principal: Principal }> {
    this.guard.checkNotLocked(userName);
    const user = await this.checkPassword(userName, password, src);
    if (!user) {
      const known = userName.length > 0 && this.hasUser(userName);
      this.guard.failed(known ? userName : null, src);
      throw new PfError("UNAUTHORIZED", "Unauthorized");
    }
    this.guard.succeeded(userName);
    this.expire();
    while (this.live.size >= this.maxTokens) {
      const oldest = this.live.keys().next().value;
      if (oldest === undefined) break;
      this.drop(oldest);
    }
    const token = randomBytes(32).toString("base64url");
    const hash = sha256Hex(token);
    const now = this.clock();
    this.store.db.insert(tokenTable).values({ hash, userName, createdAtMs: now, lastUsedMs: now }).run();
    const principal = principalOf(user);
    this.live.set(hash, { ...principal, createdAtMs: now, lastUsedMs: now, persistedLastUsedMs: now });
    return { token, principal };
  }

  /** The principal of a valid token (and mark it used), or null for unknown/expired tokens. */
  check(token: string): Principal | null {
    if (token.length === 0 || token.length > 256) return null;
    const hash = sha256Hex(token);
    const t = this.live.get(hash);
    if (!t) return null;
    const now = this.clock();
    if (now - t.lastUsedMs >= this.idleTimeoutMs || now - t.createdAtMs >= this.absoluteTimeoutMs) {
      this.drop(hash);
      return null;
    }
    t.lastUsedMs = now;
    this.live.delete(hash); // move to the back: most recently used
    this.live.set(hash, t);
    if (now - t.persistedLastUsedMs >= LAST_USED_WRITE_MS) {
      this.store.db.update(tokenTable).set({ lastUsedMs: now }).where(eq(tokenTable.hash, hash)).run();
      t.persistedLastUsedMs = now;
    }
    return { userName: t.userName, role: t.role, mustChangePassword: t.mustChangePassword };
  }

  /**
   * check() for a standby MDM (HA mode), which may not write: the token's replicated row decides
   * (the active MDM persists lastUsed at most every LAST_USED_WRITE_MS, hence the slack). Nothing
   * is marked used or dropped; the active MDM does that.
   */
  checkReadOnly(token: string): Principal | null {
    if (token.length === 0 || token.length > 256) return null;
    const row = this.store.db.select().from(tokenTable).where(eq(tokenTable.hash, sha256Hex(token))).get();
    if (!row) return null;
    const now = this.clock();
    if (now - row.lastUsedMs >= this.idleTimeoutMs + LAST_USED_WRITE_MS || now - row.createdAtMs >= this.absoluteTimeoutMs) return null;
    const u = this.store.db.select().from(userTable).where(eq(userTable.name, row.userName)).get();
    return u ? principalOf(u) : null;
  }

  logout(token: string): void {
    this.drop(sha256Hex(token));
  }

  /** The user's row changed (role, password flag) or is gone: update or drop its live tokens. */
  refreshUser(userName: string): void {
    const u = this.store.db.select().from(userTable).where(eq(userTable.name, userName)).get();
    for (const [hash, t] of this.live) {
      if (t.userName !== userName) continue;
      if (!u) this.drop(hash);
      else Object.assign(t, principalOf(u));
    }
    if (!u) this.store.db.delete(tokenTable).where(eq(tokenTable.userName, userName)).run();
    this.verified.clear();
  }

  /** End every token of a user but `keepToken` (a password change ends the other sessions). */
  dropUserTokens(userName: string, keepToken?: string): void {
    const keep = keepToken === undefined ? null : sha256Hex(keepToken);
    for (const [hash, t] of this.live) if (t.userName === userName && hash !== keep) this.drop(hash);
  }

  get size(): number {
    return this.live.size;
  }

  /** Drop every token idle for longer than the timeout or past its absolute lifetime. */
  expire(): void {
    const now = this.clock();
    const cutoff = now - this.idleTimeoutMs;
    // the map is in least-recently-used order: stop at the first live token
    for (const [hash, t] of this.live) {
      if (t.lastUsedMs > cutoff) break;
      this.live.delete(hash);
    }
    // persisted last_used may lag by LAST_USED_WRITE_MS: only rows surely expired go
    this.store.db.delete(tokenTable).where(lt(tokenTable.lastUsedMs, cutoff - LAST_USED_WRITE_MS)).run();
    this.store.db.delete(tokenTable).where(lt(tokenTable.createdAtMs, now - this.absoluteTimeoutMs)).run();
  }

  private cacheKey(user: UserRow, password: string): string {
    return sha256Hex(`${user.name}\0${password}\0${user.passwordHash}`);
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= Bun.password.hash(randomBytes(16).toString("hex"), { algorithm: "argon2id" });
    return this.dummyHash;
  }

  private drop(hash: string): void {
    this.live.delete(hash);
    this.store.db.delete(tokenTable).where(eq(tokenTable.hash, hash)).run();
  }
}

function principalOf(u: UserRow): Principal {
  return { userName: u.name, role: roleOf(u), mustChangePassword: u.passwordChangeRequired !== 0 };
}

/** Constant-time comparison of two secrets (lengths may differ). */
export function secretsEqual(a: string, b: string): boolean {
  const ha = Bun.CryptoHasher.hash("sha256", a);
  const hb = Bun.CryptoHasher.hash("sha256", b);
  return timingSafeEqual(ha, hb) && a.length === b.length;
}
