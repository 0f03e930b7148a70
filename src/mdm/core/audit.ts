// The MDM's audit log: one record per mutating REST call, login success or failure, refused
// call, and per SDS heartbeat that reported refused handshakes or grants. Records are
// hash-chained: hash = SHA-256(prev_hash ‖ canonical JSON of the record's fields), and audit_head
// keeps the first kept record's anchor (prev_hash) and the last seq and hash, so verify() finds an
// edited record (its hash), a removed one (a gap in seq, or a broken link) and a removed tail
// (head mismatch).
// Invariants:
// - append-only: the only writes are append() and prune() (the oldest beyond
//   Limits.auditMaxRecords, moving the anchor forward); both run in the caller's transaction;
// - secrets never enter a record: params pass through redact() (password, token, secret, key
//   fields become "***") and are cut to Limits.auditMaxParamsBytes;
// - seq is contiguous from head.first_seq to head.last_seq.
// Someone who can rewrite the whole database can rewrite the whole chain; the chain shows edits
// by anything less (a hand-edited row, a deleted line, a restored old backup's tail).

import { createHash } from "node:crypto";
import { and, asc, desc, eq, gt, lte, type SQL } from "drizzle-orm";
import { Limits } from "../../proto/limits.ts";
import { auditTable, type AuditRow } from "../../store/mdm_schema.ts";
import type { MdmContext } from "./context.ts";

export type AuditKind = "rest" | "login" | "logout" | "refused" | "dataplane";
export type AuditResult = "ok" | "failed" | "refused";

export interface AuditEvent {
  kind: AuditKind;
  actor: string;
  role: string;
  src: string;
  method?: string;
  path?: string;
  objectType?: string;
  objectId?: string;
  action?: string;
  params?: unknown;
  result: AuditResult;
  status?: number;
  detail?: string;
  durationMs?: number;
}

const GENESIS = "0".repeat(64);
const SECRET_KEY = /pass(word)?|secret|token|key|authorization|cookie/i;
const REDACTED = "***";

/** A copy of v with every secret-looking field replaced; strings cut to 256 chars. */
export function redact(v: unknown, depth = 0): unknown {
  if (depth > 6) return "…";
  if (Array.isArray(v)) return v.slice(0, 32).map((x) => redact(x, depth + 1));
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v).slice(0, 64)) out[k] = SECRET_KEY.test(k) ? REDACTED : redact(x, depth + 1);
    return out;
  }
  if (typeof v === "string") return v.length > 256 ? `${v.slice(0, 256)}…` : v;
  return v;
}

function paramsText(params: unknown): string {
  if (params === undefined) return "";
  const s = JSON.stringify(redact(params)) ?? "";
  return s.length > Limits.auditMaxParamsBytes ? `${s.slice(0, Limits.auditMaxParamsBytes)}…` : s;
}

type Hashed = Omit<AuditRow, "hash">;

/** The chain hash of a record (every field but its own hash, in a fixed order). */
export function recordHash(r: Hashed): string {
  const fields = [r.seq, r.tsMs, r.kind, r.actor, r.role, r.src, r.method, r.path, r.objectType, r.objectId, r.action, r.params, r.result, r.status, r.detail, r.durationMs];
  return createHash("sha256").update(r.prevHash).update("\n").update(JSON.stringify(fields)).digest("hex");
}

interface Head {
  firstSeq: number;
  firstPrevHash: string;
  lastSeq: number;
  lastHash: string;
  pruned: number;
}

function headOf(ctx: MdmContext): Head {
  // cached statements here and in appendAudit: drizzle built each query's text per call, ~0.7 ms
  // of every audited REST call (a volume create or map at 100,000 volumes: bench/mdm_rest_inproc.ts)
  const h = ctx.store.sqlite
    .query<Head, []>("SELECT first_seq AS firstSeq, first_prev_hash AS firstPrevHash, last_seq AS lastSeq, last_hash AS lastHash, pruned FROM audit_head WHERE id = 1")
    .get();
  return h ?? { firstSeq: 1, firstPrevHash: GENESIS, lastSeq: 0, lastHash: GENESIS, pruned: 0 };
}

/** Append one record (inside the caller's transaction, if any). Returns its seq. */
export function appendAudit(ctx: MdmContext, e: AuditEvent): number {
  return ctx.store.sqlite.transaction(() => {
    const head = headOf(ctx);
    const row: Hashed = {
      seq: head.lastSeq + 1,
      tsMs: ctx.clock(),
      kind: e.kind,
      actor: e.actor.slice(0, 256),
      role: e.role,
      src: e.src.slice(0, 128),
      method: e.method ?? "",
      path: (e.path ?? "").slice(0, 512),
      objectType: e.objectType ?? "",
      objectId: e.objectId ?? "",
      action: e.action ?? "",
      params: paramsText(e.params),
      result: e.result,
      status: e.status ?? 0,
      detail: (e.detail ?? "").slice(0, 1024),
      durationMs: Math.round(e.durationMs ?? 0),
      prevHash: head.lastHash,
    };
    const hash = recordHash(row);
    ctx.store.sqlite
      .query<never, [number, number, string, string, string, string, string, string, string, string, string, string, string, number, string, number, string, string]>(
        "INSERT INTO audit_log (seq, ts_ms, kind, actor, role, src, method, path, object_type, object_id, action, params, result, status, detail, duration_ms, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(row.seq, row.tsMs, row.kind, row.actor, row.role, row.src, row.method, row.path, row.objectType, row.objectId, row.action, row.params, row.result, row.status, row.detail, row.durationMs, row.prevHash, hash);
    const next: Head = { ...head, lastSeq: row.seq, lastHash: hash };
    ctx.store.sqlite
      .query<never, [number, string, number, string, number]>(
        "INSERT INTO audit_head (id, first_seq, first_prev_hash, last_seq, last_hash, pruned) VALUES (1, ?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET last_seq = ?3, last_hash = ?4",
      )
      .run(next.firstSeq, next.firstPrevHash, next.lastSeq, next.lastHash, next.pruned);
    prune(ctx, next);
    return row.seq;
  })();
}

/** Drop the oldest records beyond the cap; the anchor moves to the new first record's prev_hash. */
function prune(ctx: MdmContext, head: Head, maxRecords: number = Limits.auditMaxRecords): void {
  const count = head.lastSeq - head.firstSeq + 1;
  if (count <= maxRecords) return;
  const newFirst = head.lastSeq - maxRecords + 1;
  // (once the log is full, every append prunes one: cached statements, as in appendAudit)
  const first = ctx.store.sqlite.query<{ prevHash: string }, [number]>("SELECT prev_hash AS prevHash FROM audit_log WHERE seq = ?").get(newFirst);
  if (!first) return; // verify() will report the gap
  ctx.store.sqlite.query<never, [number]>("DELETE FROM audit_log WHERE seq < ?").run(newFirst);
  ctx.store.sqlite
    .query<never, [number, string, number]>("UPDATE audit_head SET first_seq = ?, first_prev_hash = ?, pruned = ? WHERE id = 1")
    .run(newFirst, first.prevHash, head.pruned + (newFirst - head.firstSeq));
}

export interface AuditVerifyResult {
  ok: boolean;
  records: number;
  firstSeq: number;
  lastSeq: number;
  pruned: number;
  /** the first problem found, with the seq it concerns */
  problems: { seq: number; problem: string }[];
}

const VERIFY_BATCH = 5000;
const MAX_PROBLEMS = 20;

/** Walk the whole chain (in batches) and report every break, up to MAX_PROBLEMS. */
export function verifyAudit(ctx: MdmContext): AuditVerifyResult {
  const head = headOf(ctx);
  const problems: AuditVerifyResult["problems"] = [];
  const report = (seq: number, problem: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ seq, problem });
  };
  let expectSeq = head.firstSeq;
  let prev = head.firstPrevHash;
  let records = 0;
  let after = head.firstSeq - 1;
  for (;;) {
    const batch = ctx.store.db.select().from(auditTable).where(gt(auditTable.seq, after)).orderBy(asc(auditTable.seq)).limit(VERIFY_BATCH).all();
    for (const r of batch) {
      records++;
      if (r.seq !== expectSeq) report(expectSeq, r.seq > expectSeq ? `records ${expectSeq}..${r.seq - 1} are missing` : `unexpected seq ${r.seq}`);
      if (r.prevHash !== prev) report(r.seq, "prev_hash does not match the record before it (a record was removed or edited)");
      const { hash, ...rest } = r;
      if (recordHash(rest) !== hash) report(r.seq, "hash does not match the record's content (the record was edited)");
      prev = hash;
      expectSeq = r.seq + 1;
    }
    if (batch.length < VERIFY_BATCH) break;
    after = batch[batch.length - 1]!.seq;
  }
  if (expectSeq - 1 !== head.lastSeq) report(head.lastSeq, `the log ends at ${expectSeq - 1} but its head says ${head.lastSeq} (records at the end were removed)`);
  else if (prev !== head.lastHash) report(head.lastSeq, "the last record's hash does not match the head (the last record was edited or replaced)");
  return { ok: problems.length === 0, records, firstSeq: head.firstSeq, lastSeq: head.lastSeq, pruned: head.pruned, problems };
}

export interface AuditQuery {
  /** records with seq > afterSeq (paging forward) */
  afterSeq?: number;
  /** records with seq <= beforeSeq */
  untilSeq?: number;
  actor?: string;
  kind?: AuditKind;
  limit?: number;
  /** newest first (default) or oldest first */
  order?: "newest" | "oldest";
}

export function queryAudit(ctx: MdmContext, q: AuditQuery): AuditRow[] {
  const where: SQL[] = [];
  if (q.afterSeq !== undefined) where.push(gt(auditTable.seq, q.afterSeq));
  if (q.untilSeq !== undefined) where.push(lte(auditTable.seq, q.untilSeq));
  if (q.actor !== undefined) where.push(eq(auditTable.actor, q.actor));
  if (q.kind !== undefined) where.push(eq(auditTable.kind, q.kind));
  const limit = Math.min(q.limit ?? 100, Limits.auditQueryMaxRecords);
  return ctx.store.db
    .select()
    .from(auditTable)
    .where(where.length > 0 ? and(...where) : undefined)
    .orderBy(q.order === "oldest" ? asc(auditTable.seq) : desc(auditTable.seq))
    .limit(limit)
    .all();
}

/** for tests: prune with a small cap */
export function pruneAuditForTest(ctx: MdmContext, maxRecords: number): void {
  prune(ctx, headOf(ctx), maxRecords);
}
