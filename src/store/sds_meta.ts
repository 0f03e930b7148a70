// An SDS's local metadata in sqlite (DATA_DIR/sds.db, WAL): devices, held extents with their
// (epoch, gen), the thin-chunk map and the dirty (freed, not yet zeroed) chunks. Rows are
// proportional to allocated 1 MiB chunks and held extents, never to 4 KiB blocks.
//
// Layout version 1 (PRAGMA user_version; version 0 files are migrated on open): a chunk row
// belongs to one LAYER of its extent's V-Tree, (volume_id = owner, extent_index, layer_id,
// chunk_index) -> (dev_no, phys_chunk); phys_chunk NULL means "owned as zeros" (a trimmed
// chunk that shadows a parent layer's data, holding no space). Version 0 rows had no layer:
// they belong to the owner's own first layer, whose id is the owner id. A row with pending != 0
// shadows a parent's data with bytes not yet known durable (copy-on-write): it counts only once
// its data was fdatasync'd and pending cleared; a row still pending when the SDS starts is
// released (the write it served was never acknowledged).
//
// Durability contract:
// - every mutation is committed (written into the WAL through the kernel) before the caller
//   acknowledges the IO that needed it, so a kill -9 never forgets an allocation an acked
//   write points at (synchronous=NORMAL: commit = write(2) into the WAL, no fsync);
// - sync() makes every committed change durable against power loss: an fdatasync of the WAL
//   file, off the event loop. Checkpoints move WAL content into the main file and sqlite syncs
//   both around them (synchronous=NORMAL in WAL mode), so a synced WAL covers everything.
// - hot-path statements are prepared once; drizzle serves the cold-path loads.

import { Database } from "bun:sqlite";
import * as fs from "node:fs";
import { join } from "node:path";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { PfError } from "../proto/errors.ts";
import { sdsChunkTable, sdsDeviceTable, sdsDirtyChunkTable, sdsExtentTable, sdsSchema } from "./sds_schema.ts";

export const SDS_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS sds_kv (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sds_device (
  dev_no INTEGER PRIMARY KEY NOT NULL,
  path TEXT NOT NULL UNIQUE,
  size_bytes INTEGER NOT NULL,
  chunk_bytes INTEGER NOT NULL,
  zeroed_below_chunk INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sds_extent (
  volume_id TEXT NOT NULL,
  extent_index INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  gen INTEGER NOT NULL,
  dev_no INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL,
  thick INTEGER NOT NULL,
  replicas TEXT NOT NULL,
  PRIMARY KEY (volume_id, extent_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sds_chunk (
  volume_id TEXT NOT NULL,
  extent_index INTEGER NOT NULL,
  chunk_index INTEGER NOT NULL,
  dev_no INTEGER NOT NULL,
  phys_chunk INTEGER NOT NULL,
  PRIMARY KEY (volume_id, extent_index, chunk_index)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS sds_chunk_phys ON sds_chunk (dev_no, phys_chunk);
CREATE TABLE IF NOT EXISTS sds_dirty_chunk (
  dev_no INTEGER NOT NULL,
  phys_chunk INTEGER NOT NULL,
  PRIMARY KEY (dev_no, phys_chunk)
) WITHOUT ROWID;
`;

/** Layout 0 -> 1: chunk rows get their layer (the owner's first layer) and may be zero-owned. */
const SDS_LAYOUT_1_SQL = `
CREATE TABLE sds_chunk_v1 (
  volume_id TEXT NOT NULL,
  extent_index INTEGER NOT NULL,
  layer_id TEXT NOT NULL,
  chunk_index INTEGER NOT NULL,
  dev_no INTEGER NOT NULL,
  phys_chunk INTEGER,
  pending INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (volume_id, extent_index, layer_id, chunk_index)
) WITHOUT ROWID;
INSERT INTO sds_chunk_v1 (volume_id, extent_index, layer_id, chunk_index, dev_no, phys_chunk)
  SELECT volume_id, extent_index, volume_id, chunk_index, dev_no, phys_chunk FROM sds_chunk;
DROP TABLE sds_chunk;
ALTER TABLE sds_chunk_v1 RENAME TO sds_chunk;
CREATE UNIQUE INDEX sds_chunk_phys ON sds_chunk (dev_no, phys_chunk);
PRAGMA user_version = 1;
`;
export const SDS_LAYOUT_VERSION = 1;

export interface DeviceRow {
  devNo: number;
  path: string;
  sizeBytes: number;
  chunkBytes: number;
  zeroedBelowChunk: number;
}

export interface ExtentRow {
  volumeId: string;
  extentIndex: number;
  epoch: number;
  gen: number;
  devNo: number;
  sizeBytes: number;
  thick: boolean;
  replicas: string[];
}

export interface ChunkRow {
  volumeId: string;
  extentIndex: number;
  /** layer of the owner's V-Tree (the owner id for its first layer) */
  layerId: string;
  chunkIndex: number;
  devNo: number;
  /** null: owned as zeros, no space */
  physChunk: number | null;
  /** copy-on-write whose data is not yet known durable (0: settled) */
  pending: number;
}

type Stmt<P extends unknown[]> = ReturnType<Database["prepare"]> & { run(...p: P): unknown };

export class SdsMeta {
  readonly sqlite: Database;
  private readonly db: BunSQLiteDatabase<typeof sdsSchema>;
  private readonly walPath: string;
  private walFd: number | null = null;
  /** a commit happened since the last sync() */
  private changed = false;
  private closed = false;
  private inflightSync: Promise<void> | null = null;

  private readonly insChunk: Stmt<[string, number, string, number, number, number | null, number]>;
  private readonly clearPendingStmt: Stmt<[number, number, number]>;
  private readonly delChunk: Stmt<[string, number, string, number]>;
  private readonly setChunkPhysStmt: Stmt<[number | null, string, number, string, number]>;
  private readonly relabelStmt: Stmt<[string, string, number, string, number]>;
  private readonly insDirty: Stmt<[number, number]>;
  private readonly delDirty: Stmt<[number, number]>;
  private readonly setWatermark: Stmt<[number, number]>;
  private readonly upsertExtent: Stmt<[string, number, number, number, number, number, number, string]>;
  private readonly delExtent: Stmt<[string, number]>;
  private readonly setGen: Stmt<[number, number, string, number]>;
  private readonly setKv: Stmt<[string, string]>;

  constructor(readonly path: string) {
    try {
      this.sqlite = new Database(path, { create: true, readwrite: true, strict: true });
    } catch (e) {
      throw new PfError("IO_ERROR", `cannot open SDS metadata ${path}: ${(e as Error).message}`);
    }
    this.sqlite.run("PRAGMA journal_mode = WAL");
    this.sqlite.run("PRAGMA synchronous = NORMAL");
    this.sqlite.run("PRAGMA busy_timeout = 5000");
    this.sqlite.run("PRAGMA wal_autocheckpoint = 4000");
    this.sqlite.transaction(() => this.sqlite.run(SDS_SCHEMA_SQL))();
    this.migrate();
    this.db = drizzle({ client: this.sqlite, schema: sdsSchema });
    this.walPath = `${path}-wal`;
    const p = <P extends unknown[]>(sql: string) => this.sqlite.prepare(sql) as unknown as Stmt<P>;
    this.insChunk = p("INSERT INTO sds_chunk (volume_id, extent_index, layer_id, chunk_index, dev_no, phys_chunk, pending) VALUES (?, ?, ?, ?, ?, ?, ?)");
    this.clearPendingStmt = p("UPDATE sds_chunk SET pending = 0 WHERE dev_no = ? AND phys_chunk = ? AND pending = ?");
    this.delChunk = p("DELETE FROM sds_chunk WHERE volume_id = ? AND extent_index = ? AND layer_id = ? AND chunk_index = ?");
    this.setChunkPhysStmt = p("UPDATE sds_chunk SET phys_chunk = ? WHERE volume_id = ? AND extent_index = ? AND layer_id = ? AND chunk_index = ?");
    this.relabelStmt = p("UPDATE sds_chunk SET layer_id = ? WHERE volume_id = ? AND extent_index = ? AND layer_id = ? AND chunk_index = ?");
    this.insDirty = p("INSERT OR IGNORE INTO sds_dirty_chunk (dev_no, phys_chunk) VALUES (?, ?)");
    this.delDirty = p("DELETE FROM sds_dirty_chunk WHERE dev_no = ? AND phys_chunk = ?");
    this.setWatermark = p("UPDATE sds_device SET zeroed_below_chunk = ? WHERE dev_no = ?");
    this.upsertExtent = p(
      "INSERT INTO sds_extent (volume_id, extent_index, epoch, gen, dev_no, size_bytes, thick, replicas) VALUES (?, ?, ?, ?, ?, ?, ?, ?) " +
        "ON CONFLICT (volume_id, extent_index) DO UPDATE SET epoch = excluded.epoch, gen = excluded.gen, dev_no = excluded.dev_no, " +
        "size_bytes = excluded.size_bytes, thick = excluded.thick, replicas = excluded.replicas",
    );
    this.delExtent = p("DELETE FROM sds_extent WHERE volume_id = ? AND extent_index = ?");
    this.setGen = p("UPDATE sds_extent SET epoch = ?, gen = ? WHERE volume_id = ? AND extent_index = ?");
    this.setKv = p("INSERT INTO sds_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  }

  /** Bring an older file to SDS_LAYOUT_VERSION (one transaction per step); refuse a newer one. */
  private migrate(): void {
    const v = this.sqlite.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version ?? 0;
    if (v > SDS_LAYOUT_VERSION) throw new PfError("INVALID_STATE", `SDS metadata ${this.path} has layout ${v}, newer than this binary knows (${SDS_LAYOUT_VERSION}); use a newer pf`);
    if (v < 1) this.sqlite.transaction(() => this.sqlite.run(SDS_LAYOUT_1_SQL))();
  }

  static openIn(dataDir: string): SdsMeta {
    fs.mkdirSync(dataDir, { recursive: true });
    return new SdsMeta(join(dataDir, "sds.db"));
  }

  /** Run fn in one transaction (one WAL commit for many rows). */
  transaction<T>(fn: () => T): T {
    const r = this.sqlite.transaction(fn)();
    this.changed = true;
    return r;
  }

  // ---- devices ----

  devices(): DeviceRow[] {
    return this.db.select().from(sdsDeviceTable).all();
  }

  addDevice(row: Omit<DeviceRow, "devNo">): DeviceRow {
    const r = this.sqlite
      .query<{ dev_no: number }, [string, number, number, number]>(
        "INSERT INTO sds_device (path, size_bytes, chunk_bytes, zeroed_below_chunk) VALUES (?, ?, ?, ?) RETURNING dev_no",
      )
      .get(row.path, row.sizeBytes, row.chunkBytes, row.zeroedBelowChunk);
    this.changed = true;
    if (r === null) throw new PfError("INTERNAL", `could not register device ${row.path}`);
    return { ...row, devNo: r.dev_no };
  }

  setZeroedBelow(devNo: number, chunk: number): void {
    this.setWatermark.run(chunk, devNo);
    this.changed = true;
  }

  // ---- extents ----

  extents(): ExtentRow[] {
    return this.db
      .select()
      .from(sdsExtentTable)
      .all()
      .map((r) => ({ ...r, replicas: JSON.parse(r.replicas) as string[] }));
  }

  putExtent(r: ExtentRow): void {
    this.upsertExtent.run(r.volumeId, r.extentIndex, r.epoch, r.gen, r.devNo, r.sizeBytes, r.thick ? 1 : 0, JSON.stringify(r.replicas));
    this.changed = true;
  }

  deleteExtent(volumeId: string, extentIndex: number): void {
    this.delExtent.run(volumeId, extentIndex);
    this.changed = true;
  }

  setExtentVersion(volumeId: string, extentIndex: number, epoch: number, gen: number): void {
    this.setGen.run(epoch, gen, volumeId, extentIndex);
    this.changed = true;
  }

  // ---- chunks ----

  chunks(): ChunkRow[] {
    return this.db.select().from(sdsChunkTable).all();
  }

  dirtyChunks(): { devNo: number; physChunk: number }[] {
    return this.db.select().from(sdsDirtyChunkTable).all();
  }

  /** Map a layer's chunk to a physical chunk (null: owned as zeros); `pending` != 0: a copy-on-write not yet durable. */
  insertChunk(volumeId: string, extentIndex: number, layerId: string, chunkIndex: number, devNo: number, physChunk: number | null, pending = 0): void {
    this.insChunk.run(volumeId, extentIndex, layerId, chunkIndex, devNo, physChunk, pending);
    this.changed = true;
  }

  /** The data of a pending mapping is durable: it counts now (whatever layer holds it by then). */
  clearPending(devNo: number, physChunk: number, pending: number): void {
    this.clearPendingStmt.run(devNo, physChunk, pending);
    this.changed = true;
  }

  /** Unmap a layer's chunk and record its physical chunk (if any) as dirty (one caller transaction). */
  releaseChunk(volumeId: string, extentIndex: number, layerId: string, chunkIndex: number, devNo: number, physChunk: number | null): void {
    this.delChunk.run(volumeId, extentIndex, layerId, chunkIndex);
    if (physChunk !== null) this.insDirty.run(devNo, physChunk);
    this.changed = true;
  }

  /** Change what a mapped chunk points at (null: owned as zeros); the caller frees the old one. */
  setChunkPhys(volumeId: string, extentIndex: number, layerId: string, chunkIndex: number, physChunk: number | null): void {
    this.setChunkPhysStmt.run(physChunk, volumeId, extentIndex, layerId, chunkIndex);
    this.changed = true;
  }

  /** Move a chunk from one layer to another of the same extent (a metadata-only merge). */
  relabelChunk(volumeId: string, extentIndex: number, fromLayerId: string, toLayerId: string, chunkIndex: number): void {
    this.relabelStmt.run(toLayerId, volumeId, extentIndex, fromLayerId, chunkIndex);
    this.changed = true;
  }

  /** Record a physical chunk that holds stale bytes but no mapping (zeroed by the cleaner). */
  markDirty(devNo: number, physChunk: number): void {
    this.insDirty.run(devNo, physChunk);
    this.changed = true;
  }

  clearDirty(devNo: number, physChunk: number): void {
    this.delDirty.run(devNo, physChunk);
    this.changed = true;
  }

  setKey(key: string, value: string): void {
    this.setKv.run(key, value);
    this.changed = true;
  }

  getKey(key: string): string | null {
    return this.sqlite.query<{ value: string }, [string]>("SELECT value FROM sds_kv WHERE key = ?").get(key)?.value ?? null;
  }

  /** True when a commit happened since the last sync(). */
  get needsSync(): boolean {
    return this.changed;
  }

  /** Make every committed change durable (fdatasync of the WAL, off the event loop). */
  sync(): Promise<void> {
    // a sync already running may cover commits the caller relies on: wait for it too
    if (!this.changed || this.closed) return this.inflightSync ?? Promise.resolve();
    const p = this.syncOnce().finally(() => {
      if (this.inflightSync === p) this.inflightSync = null;
    });
    this.inflightSync = p;
    return p;
  }

  private async syncOnce(): Promise<void> {
    this.changed = false;
    try {
      if (this.walFd === null) {
        if (!fs.existsSync(this.walPath)) return; // everything is in the main file, synced by its checkpoint
        this.walFd = fs.openSync(this.walPath, "r");
      }
      const fd = this.walFd;
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    } catch (e) {
      this.changed = true;
      throw new PfError("IO_ERROR", `fdatasync of SDS metadata WAL failed: ${(e as Error).message}`);
    }
  }

  /** Synchronous variant for the rare paths that must order metadata after data right now. */
  syncNow(): void {
    this.changed = false;
    if (this.walFd === null) {
      if (!fs.existsSync(this.walPath)) return;
      this.walFd = fs.openSync(this.walPath, "r");
    }
    fs.fdatasyncSync(this.walFd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.walFd !== null) fs.closeSync(this.walFd);
    this.walFd = null;
    this.sqlite.close();
  }
}
