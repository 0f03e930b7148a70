// Control messages the MDM sends an SDS over the data plane (Op.CONTROL, payload = UTF-8 JSON of
// one ControlRequest) to take crash-consistent snapshots and restores (snapshots-qos.md §6.3):
//
//   fence  {fenceId, graphs, holdVolumeIds, timeoutMs}: keep the new graph versions aside
//          (pending), hold every new client write/trim/zero of the listed volumes, and reply
//          once every write admitted before the fence has been acknowledged;
//   commit {fenceId}: the MDM committed: apply the pending graphs, release the held writes
//          (they now go to the new open layers);
//   abort  {fenceId}: the MDM gave up: drop the pending graphs, release the held writes into
//          the old layers (nothing was written meanwhile, so nothing needs undoing).
//
// A control message is not an IO: JSON is fine here (a few per snapshot, never per write).
// Invariants: the fence is idempotent per fenceId; an SDS never releases held writes into the
// new layers without a commit (or a graph that shows it), and aborts on its own only after its
// timeout AND an MDM answer, asked after that timeout, that no longer lists the fence.

import { z } from "zod";
import { VTreeGraph } from "./cluster_api.ts";
import { FrameError } from "./dataplane.ts";

export const FENCE_ID = z.string().regex(/^[0-9a-f]{16}$/, "expected a 16-hex-digit fence id");

export const ControlRequest = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("fence"),
    fenceId: FENCE_ID,
    graphs: z.array(VTreeGraph).min(1).max(1024),
    holdVolumeIds: z.array(z.string().regex(/^[0-9a-f]{16}$/)).max(4096),
    timeoutMs: z.number().int().positive().max(60_000),
  }),
  z.object({ kind: z.literal("commit"), fenceId: FENCE_ID }),
  z.object({ kind: z.literal("abort"), fenceId: FENCE_ID }),
]);
export type ControlRequest = z.infer<typeof ControlRequest>;

export function encodeControl(req: ControlRequest): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(req));
}

/** Decoding is validation: a payload that is not one ControlRequest is a FrameError. */
export function decodeControl(payload: Uint8Array): ControlRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    throw new FrameError("payload", "CONTROL payload is not JSON");
  }
  const r = ControlRequest.safeParse(raw);
  if (!r.success) throw new FrameError("payload", `CONTROL payload: ${r.error.issues[0]?.message ?? "invalid"}`);
  return r.data;
}
