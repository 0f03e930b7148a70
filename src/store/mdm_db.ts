// Opens the MDM's sqlite database (DATA_DIR/mdm.db): WAL mode, synchronous=FULL so a commit that
// returned survives kill -9 and power loss, foreign keys on, migrations applied. Returns the raw
// bun:sqlite handle (for transactions and prepared hot-path statements) and the drizzle wrapper.
// WAL checkpoints run off the event loop (WalCheckpointer below), not inside the commit that
// crossed sqlite's auto-checkpoint threshold.

import consola from "consola";
import { Database } from "bun:sqlite";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { migrateMdmDb } from "./mdm_migrate.ts";
import { mdmSchema } from "./mdm_schema.ts";

export type MdmDrizzle = BunSQLiteDatabase<typeof mdmSchema>;

export interface MdmDb {
  sqlite: Database;
  db: MdmDrizzle;
  close(): void;
}

export function openMdmDb(path: string): MdmDb {
  const sqlite = new Database(path, { create: true, readwrite: true, strict: true });
  sqlite.run("PRAGMA journal_mode = WAL");
  sqlite.run("PRAGMA synchronous = FULL");
  sqlite.run("PRAGMA foreign_keys = ON");
  sqlite.run("PRAGMA busy_timeout = 5000");
  // page caches of 64 MiB (sqlite's default is 2 MiB): at 100,000 volumes (1.6 M extent rows,
  // their indexes, the TEMP copy log of up to 1 M rows) the default kept little of any B-tree
  // in memory, and every create's inserts and every recovery read paid page reads
  const cacheKib = cacheKibOf(process.env.PF_MDM_CACHE_KIB);
  sqlite.run(`PRAGMA cache_size = -${cacheKib}`);
  sqlite.run(`PRAGMA temp.cache_size = -${cacheKib}`);
  migrateMdmDb(sqlite);
  const db = drizzle({ client: statementCaching(sqlite), schema: mdmSchema });
  // PF_MDM_CHECKPOINT_WORKER=0: sqlite's own auto-checkpoint in the committing call, as before
  const checkpointer = process.env.PF_MDM_CHECKPOINT_WORKER === "0" ? null : new WalCheckpointer(sqlite, path);
  return {
    sqlite,
    db,
    close: () => {
      checkpointer?.stop();
      sqlite.close();
    },
  };
}

/**
 * WAL checkpoints on a worker thread with its own connection, instead of sqlite's auto-checkpoint.
 * The auto-checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages: it copies every
 * page of the WAL into the database file and fsyncs it, synchronously, on the event loop. At
 * 100,000 volumes (a 400 MB database, each create dirtying pages all over the extent B-trees)
 * that COMMIT took up to ~450 ms every ~20 creates, and every REST request and heartbeat waited
 * behind it (bench/mdm_rest_inproc.ts: create max 447 ms with it, 13 ms without).
 *
 * How: the main connection's auto-checkpoint is off; a timer (unref'd) reads how much of the WAL
 * is not checkpointed yet (pendingBytes) and, past WAL_CHECKPOINT_BYTES, asks the worker for a PASSIVE checkpoint (one at a time).
 * PASSIVE never waits for nor blocks the writer: it backfills what no reader still needs, and the
 * next write transaction after a complete backfill restarts the WAL from its start (sqlite does
 * that by itself), so the WAL stays near the threshold as before. Durability is unchanged: a
 * commit is durable when its WAL frames are fsynced (synchronous=FULL, in the COMMIT); the
 * checkpoint only moves durable frames into the database file and fsyncs that before the WAL
 * may be reused. The worker starts at the first checkpoint (most MDMs of the tests never reach
 * one). If it cannot start or fails, the main connection's auto-checkpoint is turned back on.
 */
const WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024; // ~1,000 pages of 4 KiB: sqlite's own threshold
const WAL_CHECK_MS = 250;
/** the wal-index header (48 bytes, twice) and the checkpoint info's nBackfill (offset 96) */
const WAL_INDEX_READ = 100;
/** WALINDEX_MAX_VERSION of sqlite's wal.c: the wal-index header's iVersion */
const WAL_INDEX_VERSION = 3007000;
const CHECKPOINT_WORKER = `
import { Database } from "bun:sqlite";
let db = null;
self.onmessage = (e) => {
  const m = e.data;
  try {
    if (m.close) { if (db) db.close(); db = null; postMessage({ closed: true }); return; }
    if (db === null) {
      db = new Database(m.path, { readwrite: true, create: false });
      db.run("PRAGMA busy_timeout = 5000");
      db.run("PRAGMA wal_autocheckpoint = 0");
    }
    const t0 = performance.now();
    const r = db.query("PRAGMA wal_checkpoint(PASSIVE)").values()[0];
    postMessage({ busy: r[0], log: r[1], done: r[2], ms: performance.now() - t0 });
  } catch (err) {
    postMessage({ error: String(err && err.message || err) });
  }
};
`;

export interface CheckpointStats {
  /** checkpoints the worker ran */
  runs: number;
  /** WAL frames and backfilled frames of the last one */
  lastLog: number;
  lastDone: number;
  /** how long the last one took on the worker, ms */
  lastMs: number;
  /** the worker failed: sqlite's auto-checkpoint is back on */
  fellBack: boolean;
}

export class WalCheckpointer {
  private worker: Worker | null = null;
  private inFlight = false;
  private timer: ReturnType<typeof setInterval> | null;
  private readonly walPath: string;
  private readonly shmPath: string;
  readonly stats: CheckpointStats = { runs: 0, lastLog: 0, lastDone: 0, lastMs: 0, fellBack: false };
  /** resolved after each checkpoint the worker answered (tests wait on it) */
  private waiters: (() => void)[] = [];

  constructor(
    private readonly sqlite: Database,
    private readonly path: string,
    private readonly thresholdBytes = WAL_CHECKPOINT_BYTES,
  ) {
    this.walPath = `${path}-wal`;
    this.shmPath = `${path}-shm`;
    sqlite.run("PRAGMA wal_autocheckpoint = 0");
    this.timer = setInterval(() => this.check(), WAL_CHECK_MS);
    this.timer.unref();
    checkpointers.set(sqlite, this);
  }

  /** Ask for a checkpoint if the WAL holds more than the threshold not yet checkpointed and none is running. */
  check(): void {
    if (this.inFlight || this.stats.fellBack) return;
    if (this.pendingBytes() < this.thresholdBytes) return;
    this.run();
  }

  /**
   * Bytes of WAL frames not yet copied into the database. The WAL file's size does not say it:
   * sqlite reuses the file from its start after a complete checkpoint and never shrinks it. The
   * wal-index (the -shm file, format documented at sqlite.org/walformat.html) does: its header
   * holds mxFrame (offset 16) and the page size (14), its checkpoint info nBackfill (96), in
   * native byte order. Unreadable (no -shm yet, an unexpected header): the WAL file's size.
   */
  pendingBytes(): number {
    try {
      const fd = openSync(this.shmPath, "r");
      try {
        const b = Buffer.alloc(WAL_INDEX_READ);
        if (readSync(fd, b, 0, WAL_INDEX_READ, 0) === WAL_INDEX_READ && b.readUInt32LE(0) === WAL_INDEX_VERSION) {
          const sz = b.readUInt16LE(14);
          const pageSize = sz === 1 ? 65536 : sz;
          const mxFrame = b.readUInt32LE(16);
          const nBackfill = b.readUInt32LE(96);
          if (pageSize >= 512 && nBackfill <= mxFrame) return (mxFrame - nBackfill) * (pageSize + 24);
        }
      } finally {
        closeSync(fd);
      }
    } catch {
      // no -shm file: fall through to the WAL's size
    }
    try {
      return statSync(this.walPath).size;
    } catch {
      return 0; // no WAL file (yet)
    }
  }

  /** Run one checkpoint on the worker now (unless one is running); resolves when it answered. */
  run(): Promise<void> {
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.inFlight || this.stats.fellBack) return done;
    try {
      this.worker ??= this.startWorker();
      this.inFlight = true;
      this.worker.postMessage({ path: this.path });
    } catch (e) {
      this.fallBack(`the checkpoint worker did not start: ${(e as Error).message}`);
    }
    return done;
  }

  private startWorker(): Worker {
    const w = new Worker(URL.createObjectURL(new Blob([CHECKPOINT_WORKER], { type: "application/javascript" })));
    w.unref();
    w.onmessage = (e: MessageEvent) => {
      const m = e.data as { busy?: number; log?: number; done?: number; ms?: number; error?: string; closed?: boolean };
      if (m.closed) {
        w.terminate();
        return;
      }
      this.inFlight = false;
      if (m.error !== undefined) this.fallBack(`a checkpoint failed: ${m.error}`);
      else {
        this.stats.runs++;
        this.stats.lastLog = m.log ?? 0;
        this.stats.lastDone = m.done ?? 0;
        this.stats.lastMs = m.ms ?? 0;
        consola.debug(`mdm: WAL checkpoint: ${m.done}/${m.log} frames in ${m.ms?.toFixed(0)} ms`);
      }
      for (const w of this.waiters.splice(0)) w();
    };
    w.onerror = (e: ErrorEvent) => {
      this.inFlight = false;
      this.fallBack(`the checkpoint worker failed: ${e.message}`);
      for (const w of this.waiters.splice(0)) w();
    };
    return w;
  }

  private fallBack(why: string): void {
    if (this.stats.fellBack) return;
    this.stats.fellBack = true;
    consola.warn(`mdm: ${why}; sqlite checkpoints the WAL in the committing call again (REST calls may wait behind it)`);
    try {
      this.sqlite.run("PRAGMA wal_autocheckpoint = 1000");
    } catch (e) {
      consola.error(`mdm: auto-checkpoint not turned back on: ${(e as Error).message}`);
    }
    this.worker?.terminate();
    this.worker = null;
  }

  /** Stop the timer and let the worker close its connection and end. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    checkpointers.delete(this.sqlite);
    this.worker?.postMessage({ close: true });
    this.worker = null;
    for (const w of this.waiters.splice(0)) w();
  }
}

const checkpointers = new WeakMap<Database, WalCheckpointer>();

/** The checkpointer of an open MDM database (tests and benches read its figures). */
export function walCheckpointerOf(sqlite: Database): WalCheckpointer | undefined {
  return checkpointers.get(sqlite);
}

/**
 * The handle drizzle runs on: its prepare() is bun:sqlite's query(), which compiles each distinct
 * SQL text once and reuses the statement. drizzle prepares every query it runs and never keeps
 * or finalizes the statement, so with the plain handle every heartbeat and REST call paid a
 * sqlite3_prepare per query (12 % of the MDM's CPU under 300 heartbeats/s, bench/mdm_scale.ts).
 * drizzle binds values as parameters, but an IN list or a multi-row insert has a text per
 * length; texts with more than CACHED_SQL_MAX_PARAMS parameters are prepared per call as
 * before, so the cache holds the fixed texts the MDM runs and short lists only (bounded).
 */
const CACHED_SQL_MAX_PARAMS = 16;
function paramCount(sql: string): number {
  let n = 0;
  for (let i = sql.indexOf("?"); i >= 0 && n <= CACHED_SQL_MAX_PARAMS; i = sql.indexOf("?", i + 1)) n++;
  return n;
}
function statementCaching(sqlite: Database): Database {
  return new Proxy(sqlite, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => (paramCount(sql) <= CACHED_SQL_MAX_PARAMS ? target.query(sql) : target.prepare(sql));
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const DEFAULT_CACHE_KIB = 65536;

/** PF_MDM_CACHE_KIB: a positive whole number of KiB; anything else is said and the default used. */
function cacheKibOf(v: string | undefined): number {
  if (v === undefined || v === "") return DEFAULT_CACHE_KIB;
  const n = Number(v);
  if (Number.isSafeInteger(n) && n > 0) return n;
  consola.warn(`mdm: PF_MDM_CACHE_KIB=${JSON.stringify(v)} is not a positive whole number of KiB; sqlite page caches of ${DEFAULT_CACHE_KIB} KiB are used`);
  return DEFAULT_CACHE_KIB;
}
