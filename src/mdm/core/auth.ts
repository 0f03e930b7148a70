// REST users and tokens. Passwords are stored only as Bun.password hashes; tokens are random
// 32-byte strings stored only as their SHA-256, so a copied database grants nothing.
// Invariants: a token is valid while used within Limits.tokenIdleTimeoutMs (injected clock);
// at most Limits.maxTokens live at once (the least recently used is dropped); tokens live in
// sqlite so they survive an MDM restart. last_used is written back at most once per
// LAST_USED_WRITE_MS per token to keep sqlite off every request's path.

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { eq, lt } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { MdmDb } from "../../store/mdm_db.ts";
import { tokenTable, userTable } from "../../store/mdm_schema.ts";

export const ADMIN_USER = "admin";
const LAST_USED_WRITE_MS = 60_000;
/** a successful password check is remembered this long (PyPowerFlex logs in twice per call) */
const VERIFIED_PASSWORD_CACHE_MS = 60_000;

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

interface LiveToken {
  userName: string;
  lastUsedMs: number;
  persistedLastUsedMs: number;
}

export interface TokenStoreOptions {
  idleTimeoutMs?: number;
  maxTokens?: number;
}

export class TokenStore {
  private readonly live = new Map<string, LiveToken>(); // insertion order = LRU order
  private readonly verified = new Map<string, number>(); // sha256(user:password:hash) -> expiry
  private readonly idleTimeoutMs: number;
  private readonly maxTokens: number;

  constructor(
    private readonly store: MdmDb,
    private readonly clock: () => number,
    opts: TokenStoreOptions = {},
  ) {
    this.idleTimeoutMs = opts.idleTimeoutMs ?? Limits.tokenIdleTimeoutMs;
    this.maxTokens = opts.maxTokens ?? Limits.maxTokens;
    const rows = store.db.select().from(tokenTable).orderBy(tokenTable.lastUsedMs).all();
    for (const r of rows) this.live.set(r.hash, { userName: r.userName, lastUsedMs: r.lastUsedMs, persistedLastUsedMs: r.lastUsedMs });
    this.expire();
  }

  /** Set (or replace) a user's password hash. */
  async setPassword(userName: string, password: string): Promise<void> {
    const hash = await Bun.password.hash(password, { algorithm: "argon2id" });
    this.store.db
      .insert(userTable)
      .values({ name: userName, passwordHash: hash, role: "SuperUser", createdAtMs: this.clock() })
      .onConflictDoUpdate({ target: userTable.name, set: { passwordHash: hash } })
      .run();
    this.verified.clear();
  }

  hasUser(userName: string): boolean {
    return this.store.db.select({ n: userTable.name }).from(userTable).where(eq(userTable.name, userName)).get() !== undefined;
  }

  async checkPassword(userName: string, password: string): Promise<boolean> {
    const user = this.store.db.select().from(userTable).where(eq(userTable.name, userName)).get();
    if (!user) return false;
    const key = sha256Hex(`${userName}\0${password}\0${user.passwordHash}`);
    const now = this.clock();
    const until = this.verified.get(key);
    if (until !== undefined && until > now) return true;
    const ok = await Bun.password.verify(password, user.passwordHash);
    if (ok) {
      if (this.verified.size > 1000) this.verified.clear();
      this.verified.set(key, now + VERIFIED_PASSWORD_CACHE_MS);
    }
    return ok;
  }

  /** Check user:password and issue a token; throws UNAUTHORIZED. */
  async login(userName: string, password: string): Promise<string> {
    if (!(await this.checkPassword(userName, password))) throw new PfError("UNAUTHORIZED", "Unauthorized");
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
    this.live.set(hash, { userName, lastUsedMs: now, persistedLastUsedMs: now });
    return token;
  }

  /** User name of a valid token (and mark it used), or null for unknown/expired tokens. */
  check(token: string): string | null {
    if (token.length === 0 || token.length > 256) return null;
    const hash = sha256Hex(token);
    const t = this.live.get(hash);
    if (!t) return null;
    const now = this.clock();
    if (now - t.lastUsedMs >= this.idleTimeoutMs) {
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
    return t.userName;
  }

  /**
   * check() for a standby MDM (HA mode), which may not write: the token's replicated row decides
   * (the active MDM persists lastUsed at most every LAST_USED_WRITE_MS, hence the slack). Nothing
   * is marked used or dropped; the active MDM does that.
   */
  checkReadOnly(token: string): string | null {
    if (token.length === 0 || token.length > 256) return null;
    const row = this.store.db.select().from(tokenTable).where(eq(tokenTable.hash, sha256Hex(token))).get();
    if (!row) return null;
    if (this.clock() - row.lastUsedMs >= this.idleTimeoutMs + LAST_USED_WRITE_MS) return null;
    return row.userName;
  }

  logout(token: string): void {
    this.drop(sha256Hex(token));
  }

  get size(): number {
    return this.live.size;
  }

  /** Drop every token idle for longer than the timeout. */
  expire(): void {
    const cutoff = this.clock() - this.idleTimeoutMs;
    // the map is in least-recently-used order: stop at the first live token
    for (const [hash, t] of this.live) {
      if (t.lastUsedMs > cutoff) break;
      this.live.delete(hash);
    }
    // persisted last_used may lag by LAST_USED_WRITE_MS: only rows surely expired go
    this.store.db.delete(tokenTable).where(lt(tokenTable.lastUsedMs, cutoff - LAST_USED_WRITE_MS)).run();
  }

  private drop(hash: string): void {
    this.live.delete(hash);
    this.store.db.delete(tokenTable).where(eq(tokenTable.hash, hash)).run();
  }
}

/** Constant-time comparison of two secrets (lengths may differ). */
export function secretsEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}
