// The etcd v3 JSON gateway's wire shapes (POST /v3/..., etcd 3.4+), as zod schemas: every answer
// from etcd is validated here before pf reads it. Gotchas of the gateway, kept in one place:
// - int64 fields (revisions, lease IDs, TTLs, counts) are JSON strings ("revision":"2");
// - proto3 drops zero/false/empty fields: a failed txn has no `succeeded`, a range with no match
//   has no `kvs`, a keepalive on a dead lease has no `TTL`, a watch's first id 0 has no `watch_id`;
// - keys and values are base64.
// Revisions and lease ids become JS numbers only after a check that they are safe integers
// (etcd revisions and lease ids stay below 2^53 in practice; a larger one is refused loudly).

import { z } from "zod";

/** An int64 as the gateway sends it: a decimal string (or a number, tolerated). */
const int64 = z.union([z.string().regex(/^-?\d+$/), z.number().int()]).transform((v, ctx) => {
  const n = typeof v === "number" ? v : Number(v);
  if (!Number.isSafeInteger(n)) {
    ctx.addIssue({ code: "custom", message: `int64 ${String(v)} is beyond 2^53` });
    return z.NEVER;
  }
  return n;
});
const int64Default0 = int64.optional().transform((v) => v ?? 0);

/** Lease ids are int64s that may use all 63 bits: kept as decimal strings, never numbers. */
const leaseId = z.union([z.string().regex(/^-?\d+$/), z.number().int()]).transform((v) => String(v));

export const Header = z.object({
  cluster_id: z.string().optional(),
  member_id: z.string().optional(),
  revision: int64Default0,
  raft_term: int64Default0,
});
export type Header = z.infer<typeof Header>;

export const KeyValue = z.object({
  key: z.string(),
  value: z.string().optional().default(""),
  create_revision: int64Default0,
  mod_revision: int64Default0,
  version: int64Default0,
  lease: leaseId.optional(),
});
export type KeyValue = z.infer<typeof KeyValue>;

export const RangeResponse = z.object({
  header: Header,
  kvs: z.array(KeyValue).optional().default([]),
  more: z.boolean().optional().default(false),
  count: int64Default0,
});
export type RangeResponse = z.infer<typeof RangeResponse>;

export const PutResponse = z.object({ header: Header });
export const DeleteRangeResponse = z.object({ header: Header, deleted: int64Default0 });

const ResponseOp = z.object({
  response_range: RangeResponse.partial({ header: true }).optional(),
  response_put: z.object({}).passthrough().optional(),
  response_delete_range: z.object({}).passthrough().optional(),
});

export const TxnResponse = z.object({
  header: Header,
  /** absent (proto3 default false) when the compares failed */
  succeeded: z.boolean().optional().default(false),
  responses: z.array(ResponseOp).optional().default([]),
});
export type TxnResponse = z.infer<typeof TxnResponse>;

export const LeaseGrantResponse = z.object({ header: Header, ID: leaseId, TTL: int64 });
/** keepalive answers wrap the message in `result`; TTL is absent once the lease is gone */
export const LeaseKeepAliveResponse = z.object({
  result: z.object({ header: Header.optional(), ID: leaseId.optional(), TTL: int64.optional() }),
});
export const LeaseTimeToLiveResponse = z.object({ header: Header, ID: leaseId, TTL: int64, grantedTTL: int64Default0 });

export const StatusResponse = z.object({
  header: Header,
  version: z.string(),
  leader: z.string().optional(),
  raftTerm: int64Default0,
  raftIndex: int64Default0,
  dbSize: int64Default0,
});
export type StatusResponse = z.infer<typeof StatusResponse>;

export const MemberListResponse = z.object({
  header: Header,
  members: z
    .array(
      z.object({
        ID: z.string(),
        name: z.string().optional().default(""),
        peerURLs: z.array(z.string()).optional().default([]),
        clientURLs: z.array(z.string()).optional().default([]),
      }),
    )
    .optional()
    .default([]),
});
export type MemberListResponse = z.infer<typeof MemberListResponse>;

export const WatchEvent = z.object({
  /** absent = PUT (proto3 default 0) */
  type: z.enum(["PUT", "DELETE"]).optional().default("PUT"),
  kv: KeyValue,
});
export type WatchEvent = z.infer<typeof WatchEvent>;

/** One message of the watch stream (newline-delimited JSON over one chunked response). */
export const WatchMessage = z.union([
  z.object({
    result: z.object({
      header: Header,
      watch_id: int64Default0,
      created: z.boolean().optional().default(false),
      canceled: z.boolean().optional().default(false),
      compact_revision: int64Default0,
      cancel_reason: z.string().optional(),
      events: z.array(WatchEvent).optional().default([]),
    }),
  }),
  z.object({ error: z.object({ code: z.number().int().optional(), message: z.string().optional() }).passthrough() }),
]);
export type WatchMessage = z.infer<typeof WatchMessage>;

/** An error body of the gateway: {"error": "...", "message": "...", "code": 5}. */
export const GatewayError = z.object({ error: z.string().optional(), message: z.string().optional(), code: z.number().int().optional() });

/** gRPC status codes the gateway carries in `code` (the ones pf reacts to). */
export const GrpcCode = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5, // "requested lease not found"
  OUT_OF_RANGE: 11, // "required revision has been compacted"
  UNAVAILABLE: 14,
  PERMISSION_DENIED: 7, // etcd auth: the user's role lacks the key range
  UNAUTHENTICATED: 16, // etcd auth: "invalid auth token" (expired, or auth was re-enabled)
} as const;

export const AuthenticateResponse = z.looseObject({ token: z.string().min(1) });

const enc = new TextEncoder();
const dec = new TextDecoder();

export function b64(s: string): string {
  return Buffer.from(enc.encode(s)).toString("base64");
}

export function unb64(s: string): string {
  return dec.decode(Buffer.from(s, "base64"));
}

/** The range_end that selects every key starting with prefix (prefix + 1 on its last byte). */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(enc.encode(prefix));
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const out = Buffer.from(bytes.subarray(0, i + 1));
      out[i] = bytes[i]! + 1;
      return out.toString("base64");
    }
  }
  return Buffer.from([0]).toString("base64"); // every key
}
