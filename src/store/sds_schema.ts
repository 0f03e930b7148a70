// drizzle table definitions of an SDS's local sqlite metadata (DATA_DIR/sds.db). They mirror
// SDS_SCHEMA_SQL in sds_meta.ts exactly (that DDL creates the tables; these give the cold-path
// queries their types). Sizes in bytes, chunk numbers in units of Limits.thinChunkBytes.
//
// Invariants kept by sds_meta.ts: a (device, physical chunk) is mapped at most once, by one
// layer of one extent (unique index; NULL = owned as zeros, no space) and is never both mapped and dirty; every mapped chunk lies below its device's
// zeroed_below_chunk watermark.

import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** Small key/value facts: sds id, applied map version. */
export const sdsKvTable = sqliteTable("sds_kv", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});

/** Devices this SDS has used; dev_no is the compact local number chunk rows refer to. */
export const sdsDeviceTable = sqliteTable("sds_device", {
  devNo: integer("dev_no").primaryKey(),
  path: text("path").notNull().unique(),
  sizeBytes: integer("size_bytes").notNull(),
  chunkBytes: integer("chunk_bytes").notNull(),
  /** chunks below this index are known to read as zeros when free */
  zeroedBelowChunk: integer("zeroed_below_chunk").notNull(),
});

/** Extent copies this SDS holds, with the replica-set epoch and write generation. */
export const sdsExtentTable = sqliteTable(
  "sds_extent",
  {
    volumeId: text("volume_id").notNull(),
    extentIndex: integer("extent_index").notNull(),
    epoch: integer("epoch").notNull(),
    gen: integer("gen").notNull(),
    devNo: integer("dev_no").notNull(),
    sizeBytes: integer("size_bytes").notNull(),
    thick: integer("thick", { mode: "boolean" }).notNull(),
    /** JSON array of SDS ids, primary first */
    replicas: text("replicas").notNull(),
  },
  (t) => [primaryKey({ columns: [t.volumeId, t.extentIndex] })],
);

/** Owned chunks: (extent, layer, logical chunk) -> physical chunk of a device (null: zeros). */
export const sdsChunkTable = sqliteTable(
  "sds_chunk",
  {
    volumeId: text("volume_id").notNull(),
    extentIndex: integer("extent_index").notNull(),
    layerId: text("layer_id").notNull(),
    chunkIndex: integer("chunk_index").notNull(),
    devNo: integer("dev_no").notNull(),
    physChunk: integer("phys_chunk"),
    /** copy-on-write whose data is not yet durable (0: settled) */
    pending: integer("pending").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.volumeId, t.extentIndex, t.layerId, t.chunkIndex] })],
);

/** Freed chunks still holding old data (zeroed by the background cleaner). */
export const sdsDirtyChunkTable = sqliteTable(
  "sds_dirty_chunk",
  {
    devNo: integer("dev_no").notNull(),
    physChunk: integer("phys_chunk").notNull(),
  },
  (t) => [primaryKey({ columns: [t.devNo, t.physChunk] })],
);

export const sdsSchema = {
  sdsKvTable,
  sdsDeviceTable,
  sdsExtentTable,
  sdsChunkTable,
  sdsDirtyChunkTable,
};
